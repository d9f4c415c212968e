"""`somna ui`: a local page to review what the agents learned, on the same core API as they use.

`app` builds the ASGI app (the views of `pages` and `review`, the templates, the static script), `auth` its
door (the token, a one-time login link, the cookie, Host and Origin checks, the security headers), `render`
what makes text safe to show (Markdown without raw HTML, diffs, the SVG charts) and `serve` runs it.
"""
