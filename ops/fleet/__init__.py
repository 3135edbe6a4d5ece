"""The fleet: the box reports to the company's MQTT broker and takes remote settings and commands from it
(shared/FLEET_API.md is the contract; docs/fleet.md says how the box implements it).

    contract.py   topics, envelopes, canonical JSON and the HMAC signatures (pure functions)
    outbox.py     the events stream the box's processes fill (common/events.py) and the agent empties
    report.py     presence, heartbeat and state, built from what `gravanois status` sees
    config.py     `config/desired` → validated, persisted, applied live or at a quiet restart
    commands.py   `commands/in` → the allowlisted commands and their results
    agent.py      `gravanois agent`: the MQTT client and its loop
    view.py       `gravanois fleet`: a web page of every box, for a small fleet
"""
