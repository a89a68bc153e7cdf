"""XMP packets carrying job ID, SKU and channels inside renditions, readable by any DAM."""

from __future__ import annotations

from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET

NS = "https://cutline.dev/ns/1.0/"
_FIELDS = ("JobID", "SKU", "Channels", "Lane", "SourceSHA256", "Model")


def build_packet(metadata: dict[str, str]) -> bytes:
    """An XMP packet with Cutline's fields (only the known keys, values escaped)."""
    attrs = "".join(
        f'\n   cutline:{key}="{escape(str(metadata[key]), {chr(34): "&quot;"})}"'
        for key in _FIELDS
        if metadata.get(key)
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f'  <rdf:Description rdf:about="" xmlns:cutline="{NS}"{attrs}/>\n'
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


def read_packet(packet: bytes | str) -> dict[str, str]:
    """Cutline's fields from an XMP packet (as found in a file's ``info['xmp']``)."""
    text = packet.decode("utf-8") if isinstance(packet, bytes) else packet
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        return {}
    root = SafeET.fromstring(text[start : end + len("</x:xmpmeta>")])
    found: dict[str, str] = {}
    for element in root.iter():
        for key, value in element.attrib.items():
            if key.startswith(f"{{{NS}}}"):
                found[key[len(NS) + 2 :]] = value
    return found
