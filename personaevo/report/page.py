"""The report's HTML: one self-contained page (inline CSS, figures as data: URIs, no
script, no external resource), rendered from a Jinja2 template with autoescaping."""

from __future__ import annotations

from jinja2 import Environment, select_autoescape

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
.note { background: #fff8e0; border-left: 4px solid #e0b000; padding: 0.4em 0.8em; }
code { background: #f4f4f4; padding: 0 0.2em; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>{{ context }}</p>
{% for note in notes %}<p class="note">{{ note }}</p>{% endfor %}
<table>
{% for key, value in facts %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>

{% for section in sections %}
<h2 id="{{ section.id }}">{{ section.title }}</h2>
{% if section.text %}<p>{{ section.text }}</p>{% endif %}
{% if section.table %}<table>
<tr>{% for cell in section.table[0] %}<th>{{ cell }}</th>{% endfor %}</tr>
{% for row in section.table[1:] %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}
{% for caption, image in section.figures %}
<figure><img src="data:image/png;base64,{{ image }}" alt="{{ caption }}">
<figcaption>{{ caption }}</figcaption></figure>
{% endfor %}
{% endfor %}
<p><small>Written by personaevo report from <code>{{ run }}</code>.</small></p>
</body>
</html>
"""


def render(**context) -> str:
    """The page for ``context`` (title, context, notes, facts, sections, run); each
    section has id, title, text, table (rows, first the header) and figures."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(TEMPLATE).render(**context)
