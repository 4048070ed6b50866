#!/usr/bin/env python3
"""Fill untranslated entries of locale/pt_BR/LC_MESSAGES/django.po from a JSON file.

    scripts/po_fill.py translations.json     # {"English msgid": "tradução", ...}

Plural entries take a list ["singular", "plural"]. Entries already translated are kept;
msgids missing from the JSON are listed on stdout, so nothing is left empty silently.
"""
import json
import re
import sys
from pathlib import Path

PO = Path(__file__).resolve().parent.parent / "locale" / "pt_BR" / "LC_MESSAGES" / "django.po"
ENTRY = re.compile(
    r'(?P<head>(?:#.*\n)*)msgid (?P<id>(?:".*"\n)+)'
    r'(?:msgid_plural (?P<pl>(?:".*"\n)+))?'
    r'(?P<strs>(?:msgstr.*\n(?:".*"\n)*)+)'
)


def unquote(block: str) -> str:
    return "".join(json.loads(line) for line in block.splitlines())


def quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def main(path: str) -> int:
    mapping = json.loads(Path(path).read_text())
    text = PO.read_text()
    missing = []

    def fill(m: re.Match) -> str:
        msgid = unquote(m["id"])
        head = m["head"].replace("#, fuzzy\n", "").replace(", fuzzy", "")
        strs = m["strs"]
        translated = all(unquote(s.split(" ", 1)[1]) for s in re.findall(r"msgstr.*\n(?:\".*\"\n)*", strs))
        if not msgid or (translated and "fuzzy" not in m["head"]):
            return m.group(0)
        if msgid not in mapping:
            missing.append(msgid)
            return m.group(0)
        value = mapping[msgid]
        out = head + "msgid " + m["id"]
        if m["pl"]:
            forms = value if isinstance(value, list) else [value, value]
            out += "msgid_plural " + m["pl"]
            out += "".join(f"msgstr[{i}] {quote(v)}\n" for i, v in enumerate(forms))
        else:
            out += f"msgstr {quote(value)}\n"
        return out

    PO.write_text(ENTRY.sub(fill, text))
    for msgid in missing:
        print("untranslated:", msgid)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
