"""A stored answer: the agent's words and the rich replies it made, kept together in the inbox's answer field.

The answer is stored before anything is sent, so that a resumed job sends it again without asking the model. A plain
text answer is stored as it is (the form earlier versions wrote); an answer with rich replies is stored as a marker and
JSON, each reply as the Graph message object it is sent as and the text a person reads of it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from .store import Part

MARKER = "\u2063whatsapp-answer:"  # an invisible separator first: no text an agent writes starts like this


@dataclass(frozen=True)
class Answer:
    """The agent's text (may be empty when it only sent rich replies) and its rich replies, in the order made."""

    text: str
    replies: tuple[Part, ...] = ()

    def encode(self) -> str:
        if not self.replies:
            return self.text
        replies = [{"body": part.body, "message": part.message} for part in self.replies]
        return MARKER + json.dumps({"text": self.text, "replies": replies}, ensure_ascii=False)

    @classmethod
    def decode(cls, stored: str) -> Answer:
        if not stored.startswith(MARKER):
            return cls(stored)
        data = json.loads(stored.removeprefix(MARKER))
        return cls(data["text"], tuple(Part(r["body"], r["message"]) for r in data["replies"]))

    def parts(self, text_parts: Sequence[str]) -> list[str | Part]:
        """The order the customer gets them in: reactions first (on the message being answered), then the words
        (``text_parts``, the formatted text split at 4096), then the other replies, the last of which is usually
        the one to act on (buttons, a list)."""
        reactions = [part for part in self.replies if part.message.get("type") == "reaction"]
        others = [part for part in self.replies if part.message.get("type") != "reaction"]
        return [*reactions, *text_parts, *others]
