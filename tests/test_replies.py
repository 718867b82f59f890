"""Reply objects: the exact message bodies Meta documents; Meta's limits refused when they are built."""

from __future__ import annotations

import pytest

from whatsapp.cloud_api.errors import GraphFailure
from whatsapp.cloud_api.sends import validate_send
from whatsapp.replies import (
    Audio,
    Button,
    Buttons,
    Contact,
    Contacts,
    Document,
    Image,
    LinkButton,
    Location,
    LocationRequest,
    Menu,
    Reaction,
    ReplyError,
    Row,
    Section,
    Sticker,
    Template,
    Video,
    media_format,
)

EXPECTED = [
    (
        Buttons("Which size?", ["Small", Button("Large", id="size-l")], footer="Prices incl. VAT"),
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Which size?"},
                "footer": {"text": "Prices incl. VAT"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "Small", "title": "Small"}},
                        {"type": "reply", "reply": {"id": "size-l", "title": "Large"}},
                    ]
                },
            },
        },
    ),
    (
        Menu(
            "What would you like?",
            "Menu",
            sections=[
                Section("Cakes", [Row("Lemon cake", id="cake-lemon", description="With meringue"), "Chocolate"]),
                Section("Drinks", ["Coffee"]),
            ],
            header="Our menu",
        ),
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "header": {"type": "text", "text": "Our menu"},
                "body": {"text": "What would you like?"},
                "action": {
                    "button": "Menu",
                    "sections": [
                        {
                            "title": "Cakes",
                            "rows": [
                                {"id": "cake-lemon", "title": "Lemon cake", "description": "With meringue"},
                                {"id": "Chocolate", "title": "Chocolate"},
                            ],
                        },
                        {"title": "Drinks", "rows": [{"id": "Coffee", "title": "Coffee"}]},
                    ],
                },
            },
        },
    ),
    (
        Menu("Pick one", "Options", rows=["A", "B"]),
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "Pick one"},
                "action": {
                    "button": "Options",
                    "sections": [{"rows": [{"id": "A", "title": "A"}, {"id": "B", "title": "B"}]}],
                },
            },
        },
    ),
    (
        LinkButton("Your parcel is on its way.", "Track it", "https://example.com/track/1001"),
        {
            "type": "interactive",
            "interactive": {
                "type": "cta_url",
                "body": {"text": "Your parcel is on its way."},
                "action": {
                    "name": "cta_url",
                    "parameters": {"display_text": "Track it", "url": "https://example.com/track/1001"},
                },
            },
        },
    ),
    (
        Image(link="https://example.com/cake.jpg", caption="Lemon cake"),
        {"type": "image", "image": {"link": "https://example.com/cake.jpg", "caption": "Lemon cake"}},
    ),
    (Image(id="1234567890"), {"type": "image", "image": {"id": "1234567890"}}),
    (
        Document(link="https://example.com/menu.pdf", filename="menu.pdf", caption="Our menu"),
        {
            "type": "document",
            "document": {"link": "https://example.com/menu.pdf", "caption": "Our menu", "filename": "menu.pdf"},
        },
    ),
    (
        Audio(link="https://example.com/jingle.mp3"),
        {"type": "audio", "audio": {"link": "https://example.com/jingle.mp3"}},
    ),
    (Video(id="vid-1", caption="How to"), {"type": "video", "video": {"id": "vid-1", "caption": "How to"}}),
    (
        Sticker(link="https://example.com/smile.webp"),
        {"type": "sticker", "sticker": {"link": "https://example.com/smile.webp"}},
    ),
    (
        Location(52.52, 13.405, name="Our shop", address="Unter den Linden 1, Berlin"),
        {
            "type": "location",
            "location": {
                "latitude": 52.52,
                "longitude": 13.405,
                "name": "Our shop",
                "address": "Unter den Linden 1, Berlin",
            },
        },
    ),
    (
        Contact("Shop support", phones=["+1 555 0100"], emails=["help@example.com"]),
        {
            "type": "contacts",
            "contacts": [
                {
                    "name": {"formatted_name": "Shop support", "first_name": "Shop support"},
                    "phones": [{"phone": "+1 555 0100", "type": "WORK"}],
                    "emails": [{"email": "help@example.com", "type": "WORK"}],
                }
            ],
        },
    ),
    (
        Contacts([Contact("Ada", phones=["+44 20 7946 0000"]), Contact("Bob", phones=["+1 555 0199"])]),
        {
            "type": "contacts",
            "contacts": [
                {
                    "name": {"formatted_name": "Ada", "first_name": "Ada"},
                    "phones": [{"phone": "+44 20 7946 0000", "type": "WORK"}],
                },
                {
                    "name": {"formatted_name": "Bob", "first_name": "Bob"},
                    "phones": [{"phone": "+1 555 0199", "type": "WORK"}],
                },
            ],
        },
    ),
    (
        LocationRequest("Where should we deliver?"),
        {
            "type": "interactive",
            "interactive": {
                "type": "location_request_message",
                "body": {"text": "Where should we deliver?"},
                "action": {"name": "send_location"},
            },
        },
    ),
    (
        Template("order_shipped", "en_US", ["Ada", "#1001"]),
        {
            "type": "template",
            "template": {
                "name": "order_shipped",
                "language": {"code": "en_US"},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "#1001"}]}
                ],
            },
        },
    ),
    (Template("hello_world"), {"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}}),
]


@pytest.mark.parametrize(("reply", "expected"), EXPECTED, ids=lambda value: type(value).__name__)
def test_each_reply_builds_the_documented_message_and_graph_accepts_it(reply, expected):
    assert reply.message() == expected
    validate_send({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16315551234", **expected})
    assert reply.summary()


def test_a_reaction_reacts_to_the_message_being_answered_unless_told_otherwise():
    assert Reaction("👍").message(replying_to="wamid.IN") == {
        "type": "reaction",
        "reaction": {"message_id": "wamid.IN", "emoji": "👍"},
    }
    assert Reaction("❤️", message_id="wamid.OTHER").message(replying_to="wamid.IN")["reaction"]["message_id"] == (
        "wamid.OTHER"
    )
    with pytest.raises(ReplyError, match="message_id"):
        Reaction("👍").message()


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: Buttons("Pick", ["A title that is too long"]), "button title is 24 characters; Meta's limit is 20"),
        (lambda: Buttons("Pick", ["A", "B", "C", "D"]), "1 to 3 buttons"),
        (lambda: Buttons("Pick", []), "1 to 3 buttons"),
        (lambda: Buttons("Pick", ["Same", Button("Other", id="Same")]), "button ids must be unique"),
        (lambda: Buttons("x" * 1025, ["A"]), "Buttons text is 1025 characters; Meta's limit is 1024"),
        (lambda: Buttons("Pick", ["A"], header="h" * 61), "header is 61 characters; Meta's limit is 60"),
        (lambda: Menu("Pick", "Choose", rows=[f"Row {n}" for n in range(11)]), "at most 10 rows in all"),
        (
            lambda: Menu("Pick", "Choose", sections=[Section(f"S{n}", [f"R{n}a", f"R{n}b"]) for n in range(6)]),
            "at most 10 rows in all",
        ),
        (lambda: Menu("Pick", "A label too long for it", rows=["A"]), "Menu button label is 23 characters"),
        (lambda: Menu("Pick", "Choose"), "rows or sections"),
        (lambda: Row("A row title longer than 24"), "row title is 26 characters; Meta's limit is 24"),
        (lambda: Row("Fine", description="d" * 73), "row description is 73 characters; Meta's limit is 72"),
        (lambda: LinkButton("Go", "Display text too long!", "https://x.y"), "display_text is 22 characters"),
        (lambda: LinkButton("Go", "Open", "ftp://x.y/file"), "http(s) URL"),
        (
            lambda: Image(link="https://x.y/a.jpg", caption="c" * 1025),
            "caption is 1025 characters; Meta's limit is 1024",
        ),
        (lambda: Image(link="https://x.y/anim.gif"), "unsupported media type for Image: .gif"),
        (lambda: Image(link="https://x.y/photo?size=large"), None),
        (
            lambda: Image(link="https://x.y/clip.mp4"),
            "unsupported media type for Image: .mp4 (Meta takes jpeg, jpg, png)",
        ),
        (lambda: Sticker(link="https://x.y/s.png"), "unsupported media type for Sticker: .png (Meta takes webp)"),
        (lambda: Image(), "a link or an uploaded media id"),
        (lambda: Image(link="https://x.y/a.jpg", id="1"), "a link or an uploaded media id"),
        (lambda: Location(91, 0), "latitude must be a number between -90 and 90"),
        (lambda: Contact("Ada", phones=["call me"]), "Contact phone must be a phone number"),
        (lambda: Template("Order Shipped"), "Template name must be lower-case"),
        (lambda: Template("order_shipped", "english"), "Template language must be a code"),
        (lambda: Reaction(""), "Reaction takes one emoji"),
        (lambda: LocationRequest(""), "LocationRequest text is required"),
    ],
)
def test_meta_limits_are_refused_when_the_reply_is_built_naming_the_limit(build, words):
    if words is None:  # a link without a file extension is left to the sender's judgement
        build()
        return
    with pytest.raises(ReplyError) as caught:
        build()
    assert words in str(caught.value)


def test_an_upload_must_be_a_type_meta_takes_for_its_kind():
    assert media_format("image", "image/png") == "image/png"
    assert media_format("audio", "audio/ogg; codecs=opus") == "audio/ogg"
    with pytest.raises(ReplyError, match=r"unsupported media type for image: image/gif \(Meta takes image/jpeg"):
        media_format("image", "image/gif")
    with pytest.raises(ReplyError, match="unsupported media kind"):
        media_format("gif", "image/gif")


def test_the_fake_graph_refuses_what_meta_refuses():
    body = {"messaging_product": "whatsapp", "to": "16315551234", **Buttons("Pick", ["A"]).message()}
    body["interactive"]["action"]["buttons"] *= 4
    with pytest.raises(GraphFailure):
        validate_send(body)
    with pytest.raises(GraphFailure, match="recipient"):
        validate_send({"messaging_product": "whatsapp", "to": "US.13491208655302741918", "text": {"body": "x"}})
