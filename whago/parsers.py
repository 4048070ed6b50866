"""The API's JSON parser: request bodies cleaned of NUL and lone surrogates (whago.text) as they are parsed."""
from rest_framework.parsers import JSONParser

from .text import clean_data


class CleanJSONParser(JSONParser):
    """JSON bodies with every string through whago.text.clean_text, before any serializer sees them."""

    def parse(self, stream, media_type=None, parser_context=None):
        return clean_data(super().parse(stream, media_type, parser_context))
