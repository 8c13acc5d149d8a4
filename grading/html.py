"""dlgrade's own HTML (the leaderboard page, the demo index, the check table of a feedback page), rendered from the
Jinja2 templates in grading/templates/pages with autoescaping on: every value is escaped by the template, so a
submission named `<script>` shows as text. What is already HTML and trusted (matplotlib's SVG, the rendered check
table inside nbconvert's page) is passed as `Markup`. The feedback page itself is nbconvert's, from the template in
grading/templates/dlgrade_feedback (grading/feedback.py).
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

PAGES = Path(__file__).parent / "templates" / "pages"


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(PAGES), undefined=jinja2.StrictUndefined,
                              autoescape=jinja2.select_autoescape(["html.j2"], default=True),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(template_name: str, **context) -> Markup:
    """The template grading/templates/pages/<template_name> rendered with `context` (escaped unless Markup)."""
    return Markup(environment().get_template(template_name).render(**context))
