"""User text (labels, paths, file names, messages) shown literally inside Streamlit markdown.

Streamlit renders captions, alerts, titles and widget labels as markdown with emoji shortcodes, colour
directives, material icons, links, images and LaTeX. A label `![x](http://host/p.png)` would fetch a remote
image, a path `root:x:0` would show an emoji and `:material/home:` an icon (Streamlit rewrites that one in the
source, before markdown); every character that markdown or those extensions read is backslash-escaped
(CommonMark allows it for any ASCII punctuation), and line breaks become spaces.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=^/])")  # `/` too: `:material/x:` is read before markdown


def literal(text: object) -> str:
    """`text` as markdown source that renders as exactly that text."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))
