"""The public survey pages: plain HTML that works on any phone, no script, no login.

Everything shown is escaped; the token is the only credential, so the pages ask browsers
not to leak it (no referrer, no cache, no framing).
"""

from __future__ import annotations

import html
from urllib.parse import quote

from fastapi.responses import HTMLResponse

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none';"
        " frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:34rem;
margin:0 auto;padding:1rem 1rem 3rem;line-height:1.45;color:#1b1b1b;background:#fff}
h1{font-size:1.35rem;margin:1rem 0}
fieldset{border:0;padding:0;margin:0 0 1.4rem}
legend{font-weight:600;margin-bottom:.6rem}
.scale{display:flex;flex-wrap:wrap;gap:.35rem}
.scale label{flex:1 0 2.6rem;text-align:center}
.scale input{position:absolute;opacity:0;width:1px;height:1px}
.scale span{display:block;padding:.7rem 0;border:1px solid #888;border-radius:.4rem;
font-size:1.05rem;cursor:pointer}
.scale input:checked+span{background:#1a5fb4;color:#fff;border-color:#1a5fb4}
.scale input:focus-visible+span{outline:3px solid #f6c343}
.ends{display:flex;justify-content:space-between;font-size:.85rem;color:#555;margin-top:.3rem}
textarea{width:100%;box-sizing:border-box;min-height:7rem;font:inherit;padding:.5rem;
border:1px solid #888;border-radius:.4rem}
button{font:inherit;font-size:1.1rem;padding:.75rem 1.4rem;border:0;border-radius:.4rem;
background:#1a5fb4;color:#fff;width:100%}
.error{background:#fdecea;border:1px solid #e0a3a0;padding:.6rem .8rem;border-radius:.4rem}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _scale(name: str, low: int, high: int, chosen: int | None) -> str:
    items = []
    for n in range(low, high + 1):
        checked = " checked" if chosen == n else ""
        items.append(
            f'<label><input type="radio" name="{name}" value="{n}"{checked}>'
            f"<span>{n}</span></label>"
        )
    return f'<div class="scale">{"".join(items)}</div>'


def survey_form(
    token: str,
    shop: str,
    *,
    errors: list[str] | None = None,
    nps: int | None = None,
    csat: int | None = None,
    comment: str | None = None,
) -> str:
    """The survey: NPS 0-10, CSAT 1-5 and a comment, posting to the answer endpoint."""
    shop_name = html.escape(shop)
    action = html.escape(f"../v1/surveys/{quote(token, safe='')}/responses", quote=True)
    problems = ""
    if errors:
        problems = (
            '<p class="error" role="alert">' + "<br>".join(html.escape(e) for e in errors) + "</p>"
        )
    body = (
        f"<h1>How did we do, from {shop_name}?</h1>{problems}"
        f'<form method="post" action="{action}">'
        "<fieldset><legend>How likely are you to recommend us to a friend?</legend>"
        f"{_scale('nps', 0, 10, nps)}"
        '<div class="ends"><span>0 = not at all</span><span>10 = extremely</span></div>'
        "</fieldset>"
        "<fieldset><legend>How satisfied are you with this visit?</legend>"
        f"{_scale('csat', 1, 5, csat)}"
        '<div class="ends"><span>1 = very unhappy</span><span>5 = very happy</span></div>'
        "</fieldset>"
        '<fieldset><legend><label for="comment">Anything you would like to tell us?</label>'
        "</legend>"
        f'<textarea id="comment" name="comment" maxlength="10000">'
        f"{html.escape(comment or '')}</textarea></fieldset>"
        '<button type="submit">Send</button></form>'
    )
    return _page(f"{shop} survey", body)


def thank_you(shop: str, *, again: bool = False) -> str:
    shop_name = html.escape(shop)
    note = (
        "We already have your answer: thank you again."
        if again
        else "Your answer went straight to the team."
    )
    return _page(
        "Thank you",
        f"<h1>Thank you!</h1><p>{note}</p><p>{shop_name} appreciates you taking the time.</p>",
    )


def not_found() -> str:
    return _page(
        "Survey not found",
        "<h1>This survey link is not known</h1><p>It may have expired. If something about"
        " your visit needs attention, please call the shop.</p>",
    )


def html_page(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=HEADERS)
