"""What each WhatsApp engine answers and posts, as WAHA's sources build it.

- NOWEB (Baileys; src/core/engines/noweb/session.noweb.core.ts, WAHA 2024.10): sendText answers
  the engine's raw message `{key: {remoteJid: "<n>@s.whatsapp.net", fromMe: true, id: "3EB0…"},
  message, messageTimestamp: "<s>", status: "PENDING"}` (protobuf JSON: the timestamp is a string);
  events carry WAHA's buildMessageId `true_<n>@c.us_<id>`. message.ack: `{id, from: <chat>,
  fromMe, ack, ackName}` (its `to`/`participant` are undefined for a direct chat, so absent);
  message: `{id, timestamp, from, fromMe, body, hasMedia, ack: null, ackName: "UNKNOWN",
  replyTo: null, _data: <Baileys message with pushName>}`.
- WEBJS (whatsapp-web.js): sendText answers a Message whose `id` is an object, read
  `id._serialized`; events are full WAMessages (`_data.notifyName` on inbound ones).
- GOWS (whatsmeow; newer WAHA, src/core/engines/gows/session.gows.core.ts): sendText answers
  `{id: "true_<chat>_<id>", _data}`; message.ack comes from receipts only (DEVICE, READ, PLAYED,
  ERROR: no SERVER ack), `{id, from: <chat>, to: null, participant: null, fromMe, ack, ackName,
  _data: <receipt>}`; message: `_data.Info.PushName`.
"""
from __future__ import annotations

import secrets
import time

ENGINES = ("NOWEB", "WEBJS", "GOWS")
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
GOWS_RECEIPT_TYPES = {-1: "server-error", 2: "", 3: "read", 4: "played"}


def sent_short_id(engine: str) -> str:
    """The id the engine gives a message it sends (Baileys 20 bytes, whatsmeow 11, WEBJS 10)."""
    size = {"NOWEB": 18, "GOWS": 9}.get(engine, 8)
    return "3EB0" + secrets.token_hex(size).upper()


def inbound_short_id() -> str:
    """The id of a message a phone sent."""
    return secrets.token_hex(16).upper()


def serialized(from_me: bool, chat: str, short_id: str) -> str:
    """WAHA's message id: <fromMe>_<chat id>_<engine id>."""
    return f"{'true' if from_me else 'false'}_{chat}_{short_id}"


def short_of(message_id: str) -> str:
    """The engine's own id inside a serialized one."""
    return message_id.rsplit("_", 1)[-1]


def jid(chat: str) -> str:
    """5511...@c.us → 5511...@s.whatsapp.net (the engines' own form); groups stay as they are."""
    return chat[: -len("@c.us")] + "@s.whatsapp.net" if chat.endswith("@c.us") else chat


def iso(ts: int) -> str:
    """Go's time.Time JSON form."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def content(msg_type: str, text: str, media: dict | None) -> dict:
    """The WhatsApp message content (WAProto field names)."""
    if msg_type == "image":
        return {"imageMessage": {"mimetype": media["mimetype"], "caption": text}}
    if msg_type == "document":
        return {"documentMessage": {"mimetype": media["mimetype"], "fileName": media.get("filename") or "",
                                    "caption": text}}
    return {"extendedTextMessage": {"text": text}}


def ack_levels(engine: str) -> tuple[int, ...]:
    """The acks a delivered message gets, in order (GOWS never reports SERVER)."""
    return (2, 3) if engine == "GOWS" else (1, 2, 3)


def sent_body(engine: str, record, me_id: str, media: dict | None, quoted: bool) -> dict:
    """The answer of sendText / sendImage / sendFile."""
    short = short_of(record.id)
    message = content(record.type, record.body, media)
    if engine == "NOWEB":
        return {"key": {"remoteJid": jid(record.chat_id), "fromMe": True, "id": short},
                "message": message, "messageTimestamp": str(record.timestamp), "status": "PENDING"}
    if engine == "GOWS":
        return {"id": record.id, "_data": message}
    key = {"fromMe": True, "remote": record.chat_id, "id": short, "_serialized": record.id}
    body = {
        "_data": {"id": key, "body": record.body, "type": record.type, "t": record.timestamp, "from": me_id,
                  "to": record.chat_id, "ack": 0, "isNewMsg": True, "self": "out"},
        "id": key, "ack": 0, "hasMedia": media is not None, "body": record.body, "type": record.type,
        "timestamp": record.timestamp, "from": me_id, "to": record.chat_id, "deviceType": "web",
        "isForwarded": False, "forwardingScore": 0, "isStatus": False, "isStarred": False, "fromMe": True,
        "hasQuotedMsg": quoted, "hasReaction": False, "vCards": [], "mentionedIds": [], "links": [],
    }
    if media is not None:
        body["_data"].update(mimetype=media["mimetype"], filename=media.get("filename"), size=media["size"])
    return body


def webjs_message(record, me_id: str | None, from_me: bool, has_media: bool, push_name: str | None = None) -> dict:
    """whatsapp-web.js Message as WAHA's toWAMessage posts it."""
    return {
        "id": record.id, "timestamp": record.timestamp, "from": me_id if from_me else record.chat_id,
        "fromMe": from_me, "source": "api" if from_me else "app", "to": record.chat_id if from_me else me_id,
        "participant": None, "body": record.body, "hasMedia": has_media, "media": None, "ack": record.ack,
        "ackName": ACK_NAMES.get(record.ack, "UNKNOWN"), "vCards": [],
        "_data": {"notifyName": push_name} if push_name else {},
    }


def gows_info(record, sender: str, from_me: bool, push_name: str | None) -> dict:
    return {"Chat": jid(record.chat_id), "Sender": sender, "IsFromMe": from_me, "IsGroup": False,
            "ID": short_of(record.id), "PushName": push_name or "", "Timestamp": iso(record.timestamp),
            "Type": "text" if record.type == "chat" else "media"}


def ack_payload(engine: str, record, ack: int, me_id: str | None, has_media: bool) -> dict:
    """The payload of message.ack for a message this session sent."""
    name = ACK_NAMES.get(ack, "UNKNOWN")
    if engine == "NOWEB":
        return {"id": record.id, "from": record.chat_id, "fromMe": True, "ack": ack, "ackName": name}
    if engine == "GOWS":
        receipt = {"Chat": jid(record.chat_id), "Sender": jid(record.chat_id), "IsFromMe": False, "IsGroup": False,
                   "MessageIDs": [short_of(record.id)], "Timestamp": iso(int(time.time())),
                   "Type": GOWS_RECEIPT_TYPES.get(ack, ""), "MessageSender": ""}
        return {"id": record.id, "from": record.chat_id, "to": None, "participant": None, "fromMe": True,
                "ack": ack, "ackName": name, "_data": receipt}
    return webjs_message(record, me_id, True, has_media)


def own_message_payload(engine: str, record, me_id: str | None, sent: dict, has_media: bool) -> dict:
    """The payload of message.any for a message this session just sent."""
    if engine == "NOWEB":
        # The engine's message is a protobuf object whose uint64 timestamp is a Long: JSON.stringify
        # writes its fields, not a number.
        return {"id": record.id, "timestamp": {"low": record.timestamp, "high": 0, "unsigned": True},
                "from": record.chat_id, "fromMe": True, "body": record.body, "hasMedia": has_media,
                "ack": 0, "ackName": "PENDING", "replyTo": None, "_data": sent}
    if engine == "GOWS":
        return {"id": record.id, "timestamp": record.timestamp, "from": record.chat_id, "fromMe": True,
                "source": "api", "body": record.body, "to": None, "participant": None, "hasMedia": has_media,
                "media": None, "ack": 1, "ackName": "SERVER", "location": None, "vCards": [], "replyTo": None,
                "_data": {"Info": gows_info(record, jid(me_id or ""), True, None), "Message": sent["_data"]}}
    return webjs_message(record, me_id, True, has_media)


def inbound_payload(engine: str, record, me_id: str | None, push_name: str | None, media: dict | None,
                    raw_media: dict | None = None) -> dict:
    """The payload of message / message.any for a message a contact sent.

    `media` is WAHA's WAMedia ({url, mimetype, filename}, url null when not downloaded) or None for a
    text; as in toWAMessage, hasMedia is Boolean(media) and the deprecated mediaUrl repeats media.url.
    `raw_media` ({mimetype, filename}) shapes the engine's own message in _data.
    """
    has_media = media is not None
    if raw_media is not None:
        kind = "image" if raw_media["mimetype"].startswith("image/") else "document"
        body = content(kind, record.body, raw_media)
    else:
        body = {"conversation": record.body}
    extra = {"media": media, "mediaUrl": media.get("url")} if has_media else {}
    if engine == "NOWEB":
        data = {"key": {"remoteJid": jid(record.chat_id), "fromMe": False, "id": short_of(record.id)},
                "messageTimestamp": record.timestamp, "broadcast": False, "message": body}
        if push_name:
            data["pushName"] = push_name
        return {"id": record.id, "timestamp": record.timestamp, "from": record.chat_id, "fromMe": False,
                "body": record.body, "hasMedia": has_media, **extra, "ack": None, "ackName": "UNKNOWN",
                "replyTo": None, "_data": data}
    if engine == "GOWS":
        return {"id": record.id, "timestamp": record.timestamp, "from": record.chat_id, "fromMe": False,
                "source": "app", "body": record.body, "to": None, "participant": None, "hasMedia": has_media,
                "media": None, **extra, "ack": 2, "ackName": "DEVICE", "location": None, "vCards": [],
                "replyTo": None, "_data": {"Info": gows_info(record, jid(record.chat_id), False, push_name),
                                           "Message": body}}
    return {**webjs_message(record, me_id, False, has_media, push_name), **extra}


def stored_message(engine: str, record, me_id: str | None, from_me: bool, push_name: str | None,
                   media: dict | None) -> dict:
    """A message as GET /api/{session}/chats/{chatId}/messages answers it (downloadMedia=false).

    NOWEB (toWAMessage of the stored Baileys message, its Longs made numbers): `from` is the chat
    whoever wrote, no `to`/`participant` in a direct chat, ack from the stored status (status - 1:
    PENDING 0, SERVER 1, DEVICE 2, READ 3) for a sent message, null for a received one. WEBJS and
    GOWS: the WAMessage their events carry.
    """
    has_media = media is not None
    if engine == "NOWEB":
        ack = record.ack if from_me else None
        body = content(record.type, record.body, media) if from_me else {"conversation": record.body}
        data = {"key": {"remoteJid": jid(record.chat_id), "fromMe": from_me, "id": short_of(record.id)},
                "message": body, "messageTimestamp": record.timestamp}
        if from_me:
            data["status"] = ack + 1 if ack is not None and ack >= 0 else 0  # ERROR is status 0
        elif push_name:
            data["pushName"] = push_name
        message = {"id": record.id, "timestamp": record.timestamp, "from": record.chat_id, "fromMe": from_me,
                   "body": record.body, "hasMedia": has_media}
        if has_media:
            message.update(media=media, mediaUrl=media.get("url"))
        message.update(ack=ack, ackName=ACK_NAMES.get(ack, "UNKNOWN"), replyTo=None, _data=data)
        return message
    if engine == "GOWS":
        sender = jid(me_id or "") if from_me else jid(record.chat_id)
        ack = record.ack if from_me else 2  # a received message is DEVICE, as its `message` event says
        return {"id": record.id, "timestamp": record.timestamp, "from": record.chat_id, "fromMe": from_me,
                "source": "api" if from_me else "app", "body": record.body, "to": None, "participant": None,
                "hasMedia": has_media, "media": media, "ack": ack, "ackName": ACK_NAMES.get(ack, "UNKNOWN"),
                "location": None, "vCards": [], "replyTo": None,
                "_data": {"Info": gows_info(record, sender, from_me, push_name),
                          "Message": content(record.type, record.body, media)}}
    message = webjs_message(record, me_id, from_me, has_media, push_name)
    if has_media:
        message.update(media=media, mediaUrl=media.get("url"))
    return message
