"""Every text the service itself sends a customer, in one place to read and translate together.

The agent writes the answers; these are the service's own words around them. Each name says when it is sent, and
each text is sent exactly as written here (the ones with blanks are functions). One customer-facing text lives
elsewhere: the answer given when an agent runs out of steps (``agents_runtime/run.py``, a package that knows nothing
of WhatsApp).
"""

from __future__ import annotations

# --- Commands (whatsapp.commands) -------------------------------------------------------------------------------------
#: Answers ``/reset`` (or ``reset``), once the conversation's history is forgotten.
RESET_DONE = "Done: I have forgotten our conversation. What can I do for you?"
#: Answers ``/help``.
HELP = (
    "I'm an assistant on WhatsApp. Send me a question as text, a voice note, a photo or a document "
    "(PDF or text) and I'll answer here.\n\n/reset starts our conversation over.\n/help shows this message."
)

# --- Instead of an answer -------------------------------------------------------------------------------------------
#: Sent once a message has failed after the retry budget (worker.max_attempts), threaded to it.
APOLOGY = "Sorry, something went wrong on our side and I could not answer that. Please try again in a moment."
#: Sent, at most once a minute, for a message over whatsapp.rate_limit_per_minute; the model is not asked.
RATE_LIMITED = "You are sending messages faster than I can answer. Please wait a minute before sending more."
#: Sent for a kind of message the agent cannot be given (unsupported or unknown types, media that cannot be read).
UNSUPPORTED = "Sorry, I can't read this kind of message yet. Please send text, a photo, a voice note or a document."
#: Sent for a video without a caption.
VIDEO_WITHOUT_CAPTION = "Sorry, I can't watch videos. Could you tell me in words what you need?"
#: Sent for a sticker, a smile for a smile; the model is not asked.
STICKER = "😊"
#: Sent when the transcript of a voice note or audio file has no words.
NO_WORDS_HEARD = "Sorry, I couldn't make out any words in that recording. Could you type it?"

# --- Before an answer -----------------------------------------------------------------------------------------------
#: Sent before the answer to a video's caption.
VIDEO_NOT_WATCHED = "I can't watch videos, so I went by your caption."

# --- Media: ``kind`` is "image", "document", "voice note" or "audio file"; sizes as readable_size writes them ------


def too_large(kind: str, size: str, cap: str) -> str:
    """Sent instead of an answer when a file is over api.max_file_size (declared so, or found so while downloading)."""
    return f"Sorry, that {kind} is {size}; I can only take files up to {cap}."


def not_downloaded(kind: str) -> str:
    """Sent instead of an answer when Graph refuses the download for good (an expired or unknown media id)."""
    return f"Sorry, I couldn't download that {kind}. Could you send it again?"


def document_not_read(name: str, why: str) -> str:
    """Sent when a document cannot be read: instead of an answer, or before the answer to its caption. ``why`` is
    one of the reasons below."""
    return f"Sorry, I can't read {name}: {why}."


#: What a document without a file name is called in :func:`document_not_read`.
YOUR_DOCUMENT = "your document"

# --- Why a document could not be read (``why`` above) ---------------------------------------------------------------
#: Its declared type is neither PDF nor text (known before it is downloaded).
DOCUMENT_TYPE_NOT_READ = "I can only read PDFs and plain text files"
#: Its bytes are neither PDF nor text.
DOCUMENT_FORMAT_NOT_READ = "I can only read PDFs and plain text files such as .txt, .csv, .json or .md"
PDF_TOO_SLOW = "the PDF takes too long to read"
#: Over the reader's memory or CPU budget, or the reader stopped.
PDF_TOO_COMPLEX = "the PDF is too complex for me to read"
PDF_WITHOUT_TEXT = "the PDF has no text I can read (it may be scanned images)"
PDF_ENCRYPTED = "the PDF is password-protected, so I cannot open it"
PDF_DAMAGED = "the PDF seems damaged, so I cannot read it"
