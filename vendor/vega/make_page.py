"""Write page.html, the HTML template of `dvc plots show/diff`, with the vendored Vega scripts inlined.

Run from the repository root after updating the *.min.js files (see README.md here):
    .venv/bin/python vendor/vega/make_page.py
"""

from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")  # load order: embed needs vega and vega-lite
# dvc-render fills {refresh_tag} and {plot_divs}; {scripts} is left out on purpose: it would add its CDN <script src>.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{inline_scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def page() -> str:
    """The template text: each vendored script inline, so the page loads nothing from the network."""
    inline_scripts = "\n".join(
        f'    <script type="text/javascript">/* {name} */\n{(HERE / name).read_text()}\n    </script>' for name in SCRIPTS
    )
    return PAGE.format(inline_scripts=inline_scripts)


if __name__ == "__main__":
    (HERE / "page.html").write_text(page())
