"""whatsapp.messages: every documented update type becomes a typed value, and nothing odd ever raises."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whatsapp.messages import (
    INTERNAL_ERROR,
    Audio,
    Button,
    ButtonReply,
    Contacts,
    Context,
    Document,
    Edit,
    ErrorInfo,
    FlowReply,
    Image,
    Interactive,
    ListReply,
    Location,
    Message,
    Order,
    OrderItem,
    Reaction,
    Revoke,
    Sticker,
    System,
    Text,
    Unknown,
    Unsupported,
    Video,
    Webhook,
    parse_message,
    parse_webhook,
)
from whatsapp.testing import webhooks as fk


def roundtrip(payload: dict) -> dict:
    """What the webhook sees: the payload as Meta's bytes, decoded again."""
    return json.loads(fk.dumps(payload))


def only_message(*messages: dict, **kwargs) -> Message:
    parsed = parse_webhook(roundtrip(fk.webhook(*messages, **kwargs)))
    assert len(parsed.messages) == 1, parsed.problems
    return parsed.messages[0]


def assert_no_internal_error(webhook: Webhook) -> None:
    assert not [p for p in webhook.problems if INTERNAL_ERROR in p]


# --------------------------------------------------------------------------- every documented type


def test_text_message_carries_sender_profile_and_phone_number():
    raw = fk.text_message("Hello", id="wamid.A1", timestamp="1700000000")
    parsed = parse_webhook(roundtrip(fk.webhook(raw)))

    assert parsed.problems == ()
    assert parsed.object == "whatsapp_business_account"
    [msg] = parsed.messages
    assert isinstance(msg, Text)
    assert (msg.id, msg.sender, msg.timestamp, msg.type) == ("wamid.A1", fk.DEFAULT_SENDER, 1700000000, "text")
    assert msg.body == "Hello" and msg.text == "Hello"
    assert msg.phone_number_id == fk.PHONE_NUMBER_ID
    assert msg.profile_name == "Kerry Fisher"
    assert msg.username is None and msg.from_user_id is None
    assert msg.context is None and msg.referral is None


def test_reply_context_names_the_quoted_message():
    msg = only_message(fk.text_message("yes that one", context_id="wamid.QUOTED"))
    assert msg.context == Context(message_id="wamid.QUOTED", from_=fk.DISPLAY_NUMBER)


def test_forward_marks_are_read_from_context():
    msg = only_message(fk.text_message("look", forwarded=True, frequently_forwarded=True))
    assert msg.context is not None
    assert msg.context.forwarded and msg.context.frequently_forwarded
    assert msg.context.message_id is None


def test_click_to_whatsapp_referral_is_kept():
    referral = {"source_url": "https://fb.me/x", "source_type": "ad", "headline": "Sale", "ctwa_clid": "abc"}
    msg = only_message(fk.text_message("I saw your ad", referral=referral))
    assert msg.referral == referral


def test_image_message():
    raw = fk.image_message("1479537139650973", caption="the receipt", url="https://lookaside.fbsbx.com/x")
    msg = only_message(raw)
    assert isinstance(msg, Image)
    assert msg.media_id == "1479537139650973"
    assert msg.mime_type == "image/jpeg"
    assert msg.sha256 == raw["image"]["sha256"]
    assert msg.caption == "the receipt" and msg.text == "the receipt"
    assert msg.url == "https://lookaside.fbsbx.com/x"


def test_video_message():
    msg = only_message(fk.video_message("987", caption=None))
    assert isinstance(msg, Video)
    assert (msg.media_id, msg.mime_type, msg.caption, msg.url) == ("987", "video/mp4", None, None)
    assert msg.text is None


def test_voice_note_is_audio_with_voice_set():
    voice = only_message(fk.audio_message("555", voice=True))
    song = only_message(fk.audio_message("556", voice=False, mime_type="audio/mpeg"))
    assert isinstance(voice, Audio) and isinstance(song, Audio)
    assert voice.voice is True and voice.mime_type == "audio/ogg; codecs=opus"
    assert song.voice is False and song.mime_type == "audio/mpeg"


def test_document_message_keeps_filename():
    msg = only_message(fk.document_message("777", "invoice.pdf", caption="March"))
    assert isinstance(msg, Document)
    assert (msg.media_id, msg.filename, msg.mime_type, msg.caption) == (
        "777",
        "invoice.pdf",
        "application/pdf",
        "March",
    )


def test_sticker_message():
    msg = only_message(fk.sticker_message("888", animated=True))
    assert isinstance(msg, Sticker)
    assert (msg.media_id, msg.animated, msg.mime_type) == ("888", True, "image/webp")


def test_location_message():
    msg = only_message(fk.location_message(38.9, -77.0, name="Office", address="1 Main St", url="https://x.test"))
    assert isinstance(msg, Location)
    assert (msg.latitude, msg.longitude) == (38.9, -77.0)
    assert (msg.name, msg.address, msg.url) == ("Office", "1 Main St", "https://x.test")
    assert msg.text is None


def test_shared_contacts_list_names_phones_and_emails():
    second = fk.contact_card("Ann Lee", phones=["+44 20 7946 0958", "+44 7700 900123"])
    raw = fk.contacts_message(cards=[fk.contact_card("Barbara Johnson", ["+1 (940) 555-1234"], ["b@x.test"]), second])
    msg = only_message(raw)
    assert isinstance(msg, Contacts)
    assert [c.formatted_name for c in msg.contacts] == ["Barbara Johnson", "Ann Lee"]
    assert msg.contacts[0].phones == ("+1 (940) 555-1234",)
    assert msg.contacts[0].emails == ("b@x.test",)
    assert msg.contacts[1].phones == ("+44 20 7946 0958", "+44 7700 900123")
    assert msg.contacts[1].raw == second


def test_button_reply():
    msg = only_message(fk.button_reply("confirm", "Yes, book it", wamid="wamid.B1"))
    assert type(msg) is ButtonReply and isinstance(msg, Interactive)
    assert msg.id == "wamid.B1"
    assert (msg.kind, msg.reply_id, msg.title) == ("button_reply", "confirm", "Yes, book it")
    assert msg.text == "Yes, book it"


def test_list_reply_with_description():
    msg = only_message(fk.list_reply("row-2", "Tuesday", description="10:00 to 12:00"))
    assert type(msg) is ListReply and isinstance(msg, Interactive)
    assert (msg.kind, msg.reply_id, msg.title, msg.description) == ("list_reply", "row-2", "Tuesday", "10:00 to 12:00")


def test_flow_answer_keeps_response_json_as_a_string():
    msg = only_message(fk.nfm_reply({"flow_token": "t1", "date": "2026-01-02"}, body="Sent"))
    assert type(msg) is FlowReply and isinstance(msg, Interactive)
    assert msg.kind == "nfm_reply"
    assert json.loads(msg.response_json) == {"flow_token": "t1", "date": "2026-01-02"}
    assert msg.body == "Sent" and msg.title is None
    assert msg.text == "Sent"


def test_an_interactive_kind_without_a_class_of_its_own_stays_interactive():
    content = {"type": "call_permission_reply", "call_permission_reply": {"response": "accept"}}
    msg = only_message(fk.message("interactive", content))
    assert type(msg) is Interactive
    assert (msg.kind, msg.title, msg.text) == ("call_permission_reply", None, None)


def test_template_quick_reply_button():
    msg = only_message(fk.template_button("STOP_PROMOS", "Stop promotions"))
    assert isinstance(msg, Button)
    assert (msg.payload, msg.text) == ("STOP_PROMOS", "Stop promotions")


def test_reaction():
    msg = only_message(fk.reaction_message("wamid.OURS", "\N{THUMBS UP SIGN}"))
    assert isinstance(msg, Reaction)
    assert (msg.message_id, msg.emoji) == ("wamid.OURS", "\N{THUMBS UP SIGN}")


@pytest.mark.parametrize("emoji", ["", None], ids=["empty", "absent"])
def test_removed_reaction_has_no_emoji(emoji):
    msg = only_message(fk.reaction_message("wamid.OURS", emoji))
    assert isinstance(msg, Reaction)
    assert msg.message_id == "wamid.OURS"
    assert msg.emoji is None


def test_order_lists_items_with_numbers():
    items = [fk.order_item("sku-1", 2, 9.99, "USD"), {"product_retailer_id": "sku-2", "quantity": "3"}]
    msg = only_message(fk.order_message(items, catalog_id="cat-1", text="gift wrap please"))
    assert isinstance(msg, Order)
    assert (msg.catalog_id, msg.text) == ("cat-1", "gift wrap please")
    assert msg.items == (
        OrderItem("sku-1", 2, 9.99, "USD"),
        OrderItem("sku-2", 3, None, None),
    )


def test_system_message_without_contacts():
    raw = fk.system_message(new_wa_id="16315559876")
    value = roundtrip(fk.webhook(raw))["entry"][0]["changes"][0]["value"]
    assert "contacts" not in value

    parsed = parse_webhook(roundtrip(fk.webhook(raw)))
    [msg] = parsed.messages
    assert isinstance(msg, System)
    assert (msg.system_type, msg.new_wa_id) == ("user_changed_number", "16315559876")
    assert msg.body.startswith("User A changed")
    assert msg.profile_name is None and msg.text is None
    assert "contacts" not in msg.value
    assert parsed.problems == ()


def test_edit_parses_the_new_message_and_inherits_sender_and_time():
    raw = fk.edit_message("wamid.ORIG", "see you at 5, not 4", id="wamid.EDIT", timestamp="1700000100")
    msg = only_message(raw)
    assert isinstance(msg, Edit)
    assert msg.original_message_id == "wamid.ORIG"
    assert isinstance(msg.edited, Text)
    assert msg.edited.body == "see you at 5, not 4"
    assert msg.edited.sender == fk.DEFAULT_SENDER
    assert msg.edited.timestamp == 1700000100
    assert msg.edited.profile_name == "Kerry Fisher"
    assert msg.text is None  # an edit is not a new question


def test_edit_of_a_media_message_parses_the_media():
    raw = fk.edit_message("wamid.ORIG", fk.image_message("321", caption="better photo"))
    msg = only_message(raw)
    assert isinstance(msg, Edit) and isinstance(msg.edited, Image)
    assert (msg.edited.media_id, msg.edited.caption) == ("321", "better photo")


def test_deeply_nested_edits_stop_without_recursing_forever():
    raw = fk.text_message("x")
    for _ in range(50):
        raw = fk.edit_message("wamid.ORIG", raw)
    parsed = parse_webhook(fk.webhook(raw))
    [msg] = parsed.messages
    depth = 0
    while isinstance(msg, Edit) and msg.edited is not None:
        msg, depth = msg.edited, depth + 1
    assert 1 <= depth < 10
    assert any("too deep" in p for p in parsed.problems)


def test_revoke():
    msg = only_message(fk.revoke_message("wamid.GONE"))
    assert isinstance(msg, Revoke)
    assert msg.original_message_id == "wamid.GONE"


@pytest.mark.parametrize("type_", ["unsupported", "unknown"])
def test_unsupported_message_carries_its_errors(type_):
    raw = fk.unsupported_message(131051, "Message type unknown", "Type not supported", "pool", type_=type_)
    msg = only_message(raw)
    assert isinstance(msg, Unsupported)
    assert msg.type == type_
    assert msg.unsupported_type == "pool"
    assert msg.errors == (ErrorInfo(131051, "Message type unknown", "Message type unknown", "Type not supported"),)


def test_known_type_without_its_object_and_value_errors_is_unsupported():
    raw = fk.message("interactive")  # type "interactive", no "interactive" key
    value_errors = [{"code": 131000, "title": "Something went wrong", "details": "Unsupported webhook payload"}]
    parsed = parse_webhook(roundtrip(fk.webhook(raw, errors=value_errors)))
    [msg] = parsed.messages
    assert isinstance(msg, Unsupported)
    assert msg.unsupported_type == "interactive"
    assert msg.errors == (ErrorInfo(131000, "Something went wrong", None, "Unsupported webhook payload"),)
    assert parsed.errors == msg.errors
    assert any("no interactive object" in p for p in parsed.problems)


def test_known_type_without_its_object_keeps_the_message_errors():
    raw = fk.message("image", errors=[fk.error(131052, "Media download error", details="too big")])
    msg = only_message(raw)
    assert isinstance(msg, Unsupported)
    assert msg.unsupported_type == "image"
    assert [(e.code, e.details) for e in msg.errors] == [(131052, "too big")]


def test_type_not_invented_yet_is_kept_as_unknown_with_raw():
    raw = fk.message("hologram", {"frames": 3})
    parsed = parse_webhook(roundtrip(fk.webhook(raw)))
    [msg] = parsed.messages
    assert type(msg) is Unknown
    assert msg.raw == raw and msg.raw["hologram"] == {"frames": 3}
    assert msg.text is None
    assert any("hologram" in p for p in parsed.problems)


# --------------------------------------------------------------------------- senders, timestamps, value


def test_username_only_sender_is_keyed_on_from_user_id():
    raw = fk.text_message("hi", sender=None, from_user_id=fk.DEFAULT_USER_ID)
    payload = roundtrip(fk.webhook(raw, username="kerry.fisher"))
    [contact] = payload["entry"][0]["changes"][0]["value"]["contacts"]
    assert "wa_id" not in contact and contact["user_id"] == fk.DEFAULT_USER_ID

    parsed = parse_webhook(payload)
    [msg] = parsed.messages
    assert msg.sender == fk.DEFAULT_USER_ID
    assert msg.from_user_id == fk.DEFAULT_USER_ID and msg.wa_id is None
    assert msg.username == "kerry.fisher" and msg.profile_name == "Kerry Fisher"
    assert msg.value["contacts"] == [contact]
    assert parsed.problems == ()


def test_from_wins_over_from_user_id_when_both_are_sent():
    msg = only_message(fk.text_message("hi", from_user_id=fk.DEFAULT_USER_ID))
    assert msg.sender == fk.DEFAULT_SENDER and msg.from_user_id == fk.DEFAULT_USER_ID
    assert msg.wa_id == fk.DEFAULT_SENDER


def test_integer_timestamps_are_accepted():
    raw = fk.text_message("hi", timestamp=1700000000)
    msg = only_message(raw)
    assert msg.timestamp == 1700000000
    assert msg.raw["timestamp"] == 1700000000


@pytest.mark.parametrize("bad", ["soon", "", None, -5, "1.7e9", True, [1]])
def test_invalid_timestamp_becomes_zero_with_a_problem(bad):
    raw = fk.text_message("hi", timestamp="0")
    raw["timestamp"] = bad
    parsed = parse_webhook(fk.webhook(raw))
    assert parsed.messages[0].timestamp == 0
    assert any("timestamp" in p for p in parsed.problems)


def test_value_is_trimmed_to_this_message_and_its_sender():
    ours = fk.text_message("mine", sender="111")
    theirs = fk.text_message("other", sender="222")
    payload = roundtrip(fk.webhook(ours, theirs))
    parsed = parse_webhook(payload)
    first, second = parsed.messages

    assert first.value == {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": fk.DISPLAY_NUMBER, "phone_number_id": fk.PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "111"}],
        "messages": [ours],
    }
    assert second.value["contacts"] == [{"profile": {"name": "Kerry Fisher"}, "wa_id": "222"}]
    assert first.raw == ours
    assert first.value["messages"][0] is first.raw


def test_parsing_leaves_the_payload_untouched():
    payload = roundtrip(fk.webhook(fk.text_message("a"), fk.edit_message("wamid.O", "b"), statuses=[fk.status("w")]))
    before = copy.deepcopy(payload)
    parse_webhook(payload)
    assert payload == before


def test_stored_message_reparses_to_the_same_value():
    raw = fk.document_message("42", "cv.pdf", caption="my cv", context_id="wamid.Q")
    original = only_message(raw)
    stored = json.loads(json.dumps({"raw": original.raw, "value": original.value}))

    again = parse_message(stored["raw"], stored["value"])
    assert again == original


@pytest.mark.parametrize("raw", [None, "text", 3, [], {"type": 5}])
def test_parse_message_never_raises_on_junk(raw):
    msg = parse_message(raw, "not a value")
    assert type(msg) is Unknown and msg.id == "" and msg.text is None  # nothing anyone could answer
    assert msg.raw == (raw if isinstance(raw, dict) else {})  # what could be kept is kept for _handle_message


def test_messages_are_frozen_and_hashable_by_value():
    raw = fk.contacts_message()
    msg, same = only_message(raw), only_message(copy.deepcopy(raw))
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.sender = "someone else"
    assert msg is not same and msg == same and hash(msg) == hash(same)
    assert len({msg, same, only_message(fk.contacts_message())}) == 2  # another message (its own id) is another


def test_several_entries_changes_and_messages_keep_their_order():
    first = fk.webhook(fk.text_message("1"), fk.text_message("2", sender="222"))
    second = fk.webhook(fk.text_message("3"), phone_number_id="999")
    second["entry"][0]["changes"].append(fk.envelope([fk.text_message("4")])["entry"][0]["changes"][0])
    parsed = parse_webhook(roundtrip(fk.combine(first, second)))

    assert [m.text for m in parsed.messages] == ["1", "2", "3", "4"]
    assert [m.phone_number_id for m in parsed.messages] == [fk.PHONE_NUMBER_ID] * 2 + ["999", fk.PHONE_NUMBER_ID]
    assert parsed.messages[1].sender == "222"
    assert parsed.problems == ()


def test_a_thousand_updates_in_one_post_are_all_parsed():
    messages = [fk.text_message(str(i)) for i in range(1000)]
    parsed = parse_webhook(roundtrip(fk.webhook(*messages)))
    assert len(parsed.messages) == 1000
    assert len({m.id for m in parsed.messages}) == 1000


def test_phone_number_id_is_not_filtered_here():
    parsed = parse_webhook(fk.webhook(fk.text_message("hi"), phone_number_id="not-ours"))
    assert [m.phone_number_id for m in parsed.messages] == ["not-ours"]


def test_message_without_id_is_dropped_with_a_problem():
    raw = fk.text_message("who am I")
    del raw["id"]
    parsed = parse_webhook(fk.webhook(raw, fk.text_message("kept")))
    assert [m.text for m in parsed.messages] == ["kept"]
    assert any("no id" in p and "messages[0]" in p for p in parsed.problems)


def test_message_without_any_sender_is_kept_with_a_problem():
    raw = fk.text_message("anonymous", sender=None, id="wamid.ANON")
    parsed = parse_webhook(fk.webhook(raw))
    [msg] = parsed.messages
    assert msg.sender == "" and msg.id == "wamid.ANON"
    assert any("messages[0]" in p and "from_user_id" in p for p in parsed.problems)
    assert not any("wamid.ANON" in p for p in parsed.problems)  # problems are logged: an id would show a number


# --------------------------------------------------------------------------- statuses and value errors


def test_statuses_including_failed_and_played():
    failed_error = fk.error(131047, "Re-engagement message", "Message failed to send", "24 hours have passed")
    payload = fk.envelope(
        statuses=[
            fk.status("wamid.S1", "sent", timestamp="1700000001", conversation_id="conv-1"),
            fk.status("wamid.S1", "delivered"),
            fk.status("wamid.S1", "read"),
            fk.status("wamid.S2", "played", timestamp=1700000009),
            fk.status("wamid.S3", "failed", errors=[failed_error]),
        ]
    )
    parsed = parse_webhook(roundtrip(payload))

    assert parsed.messages == () and parsed.problems == ()
    assert [(s.id, s.status) for s in parsed.statuses] == [
        ("wamid.S1", "sent"),
        ("wamid.S1", "delivered"),
        ("wamid.S1", "read"),
        ("wamid.S2", "played"),
        ("wamid.S3", "failed"),
    ]
    sent, _, _, played, failed = parsed.statuses
    assert sent.timestamp == 1700000001 and sent.conversation_id == "conv-1"
    assert sent.pricing_category == "service" and sent.recipient_id == fk.DEFAULT_SENDER
    assert sent.phone_number_id == fk.PHONE_NUMBER_ID
    assert played.timestamp == 1700000009
    assert failed.errors == (
        ErrorInfo(131047, "Re-engagement message", "Message failed to send", "24 hours have passed"),
    )
    assert failed.pricing_category is None
    assert failed.raw["errors"] == [failed_error]


def test_status_without_id_is_dropped_with_a_problem():
    bad = fk.status("x")
    del bad["id"]
    parsed = parse_webhook(fk.envelope(statuses=[bad, fk.status("wamid.OK")]))
    assert [s.id for s in parsed.statuses] == ["wamid.OK"]
    assert any("statuses[0]" in p for p in parsed.problems)


def test_value_level_errors_are_reported():
    error = fk.error(130429, "Rate limit hit", "Cloud API message throughput has been reached.", "slow down")
    parsed = parse_webhook(roundtrip(fk.envelope(errors=[error])))
    assert parsed.errors == (
        ErrorInfo(130429, "Rate limit hit", "Cloud API message throughput has been reached.", "slow down"),
    )
    assert parsed.messages == () and parsed.statuses == ()


# --------------------------------------------------------------------------- odd envelopes


@pytest.mark.parametrize("payload", [None, [], "x", 3, 2.5, True, {}])
def test_non_webhook_payload_gives_an_empty_webhook_with_a_problem(payload):
    parsed = parse_webhook(payload)
    assert parsed.messages == () and parsed.statuses == ()
    assert parsed.problems


def test_other_change_fields_and_objects_are_reported_not_parsed():
    payload = fk.webhook(fk.text_message("hi"))
    payload["object"] = "page"
    payload["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "VERIFIED"}})
    parsed = parse_webhook(payload)
    assert parsed.object == "page"
    assert len(parsed.messages) == 1
    assert any("'page'" in p for p in parsed.problems)
    assert any("account_update" in p for p in parsed.problems)


def test_broken_items_are_reported_and_the_rest_kept():
    payload = fk.webhook(fk.text_message("ok"))
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"].insert(0, None)
    value["new_thing"] = 1
    payload["entry"].append("junk")
    payload["entry"].append({"id": fk.WABA_ID, "changes": [{"field": "messages", "value": None}]})
    parsed = parse_webhook(payload)
    assert [m.text for m in parsed.messages] == ["ok"]
    problems = "\n".join(parsed.problems)
    for expected in ("messages[0]", "new_thing", "entry[1]", "entry[2].changes[0].value"):
        assert expected in problems


def test_text_property_of_each_kind():
    assert only_message(fk.text_message("t")).text == "t"
    assert only_message(fk.button_reply("b", "B")).text == "B"
    assert only_message(fk.template_button("P", "T")).text == "T"
    assert only_message(fk.image_message("1", caption="c")).text == "c"
    assert only_message(fk.location_message(1.0, 2.0)).text is None
    assert only_message(fk.revoke_message("w")).text is None


# --------------------------------------------------------------------------- never raises (property tests)

# Keys and strings the parser looks for, so that random values reach deep into its branches.
JSON_KEYS = (
    "object entry changes field value messages statuses errors contacts metadata phone_number_id id from "
    "from_user_id type timestamp text body context edit message interactive button_reply nfm_reply image "
    "phones product_items code error_data wa_id user_id profile reaction emoji order system unsupported"
).split()
JSON_WORDS = "messages text edit interactive image contacts order unknown whatsapp_business_account 1700000000".split()
json_keys = st.sampled_from(JSON_KEYS) | st.text(max_size=8)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(["", *JSON_WORDS])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=5),
    max_leaves=40,
)

SAMPLE_MESSAGES = [
    fk.text_message("hi", context_id="wamid.Q", referral={"source_url": "https://x"}),
    fk.text_message("u", sender=None, from_user_id=fk.DEFAULT_USER_ID),
    fk.image_message("1", caption="c"),
    fk.audio_message("2"),
    fk.document_message("3", "a.pdf"),
    fk.sticker_message("4"),
    fk.video_message("5"),
    fk.location_message(1.5, 2.5, name="n"),
    fk.contacts_message(),
    fk.button_reply("b", "B"),
    fk.list_reply("l", "L", "d"),
    fk.nfm_reply(),
    fk.template_button("p", "t"),
    fk.reaction_message("wamid.R", "x"),
    fk.order_message(),
    fk.system_message(),
    fk.edit_message("wamid.O", fk.image_message("9")),
    fk.revoke_message("wamid.O"),
    fk.unsupported_message(unsupported_type="pool"),
]
SAMPLE_PAYLOAD = fk.webhook(
    *SAMPLE_MESSAGES,
    statuses=[fk.status("wamid.S", "failed", errors=[fk.error(131047, "Re-engagement message")])],
    errors=[fk.error(130429, "Rate limit hit")],
    username="k",
)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


def _replace(root: object, path: tuple, new: object) -> object:
    if not path:
        return new
    node = root
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = new
    return root


def test_sample_payload_parses_without_problems_it_did_not_plant():
    parsed = parse_webhook(roundtrip(SAMPLE_PAYLOAD))
    assert len(parsed.messages) == len(SAMPLE_MESSAGES)
    assert not [m for m in parsed.messages if type(m) is Unknown]
    assert parsed.problems == ()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(payload):
    parsed = parse_webhook(payload)
    assert isinstance(parsed, Webhook)
    assert_no_internal_error(parsed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, json_values)
def test_arbitrary_message_in_a_valid_envelope_never_raises(raw, contacts):
    payload = fk.envelope([raw], contacts=contacts)
    parsed = parse_webhook(payload)
    assert_no_internal_error(parsed)
    alone = parse_message(raw, payload["entry"][0]["changes"][0]["value"])
    assert alone.raw == (raw if isinstance(raw, dict) else {})
    assert [parse_message(m.raw, m.value) for m in parsed.messages] == list(parsed.messages)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_payload_never_raises(data):
    payload = copy.deepcopy(SAMPLE_PAYLOAD)
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        path = data.draw(st.sampled_from(_paths(payload)), label="path")
        payload = _replace(payload, path, data.draw(json_values, label="new value"))

    parsed = parse_webhook(payload)

    assert isinstance(parsed, Webhook)
    assert_no_internal_error(parsed)
    for msg in parsed.messages:
        assert isinstance(msg.id, str) and msg.id
        assert isinstance(msg.timestamp, int) and isinstance(msg.sender, str)
        assert parse_message(msg.raw, msg.value) == msg
    for status in parsed.statuses:
        assert status.id and isinstance(status.status, str)


# --------------------------------------------------------------------------- fakes: bytes and signature


def test_signature_is_hmac_sha256_of_the_exact_bytes():
    payload = fk.webhook(fk.text_message("caf\N{LATIN SMALL LETTER E WITH ACUTE} \N{THUMBS UP SIGN} a/b"))
    body = fk.dumps(payload)
    expected = hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()

    assert fk.sign(body, "app-secret") == "sha256=" + expected
    assert fk.sign(body + b" ", "app-secret") != "sha256=" + expected


def test_dumps_escapes_like_meta_and_decodes_to_the_same_payload():
    payload = {"text": {"body": "caf\N{LATIN SMALL LETTER E WITH ACUTE} \N{THUMBS UP SIGN} https://x.test/a"}}
    body = fk.dumps(payload)
    assert body == b'{"text":{"body":"caf\\u00e9 \\ud83d\\udc4d https:\\/\\/x.test\\/a"}}'
    assert json.loads(body) == payload


def test_new_wamids_are_unique_and_shaped_like_meta():
    ids = {fk.new_wamid(fk.DEFAULT_SENDER) for _ in range(500)}
    assert len(ids) == 500
    assert all(i.startswith("wamid.HBgL") for i in ids)


def test_padding_in_a_change_is_not_copied_into_each_of_its_messages():
    payload = fk.webhook(*[fk.text_message(f"message {n}") for n in range(20)])
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["padding"] = "x" * (3 * 1024 * 1024)
    value["contacts"][0]["padding"] = "y" * 1024
    value["contacts"][0]["profile"]["padding"] = "z" * 1024
    value["messaging_product"] = "w" * 1024
    messages = parse_webhook(payload).messages
    assert len(messages) == 20
    assert sum(len(json.dumps(message.value)) for message in messages) < 20 * 400
    first = messages[0]
    assert first.value["metadata"] == {"display_phone_number": fk.DISPLAY_NUMBER, "phone_number_id": fk.PHONE_NUMBER_ID}
    assert first.value["contacts"] == [{"wa_id": fk.DEFAULT_SENDER, "profile": {"name": "Kerry Fisher"}}]
    assert parse_message(first.raw, first.value).profile_name == "Kerry Fisher"
