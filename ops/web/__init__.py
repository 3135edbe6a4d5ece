"""`gravanois web`: the box's web app — court pages for players, the courtside screen, the dashboard.

It only reads Redis and the files in the data dir (and, with GN_WEB_PRESS on, takes the one press path,
`trigger.press.submit`); it never writes a highlight, so it going down or being slow cannot delay
recording, building or rendering. See docs/web.md.
"""
