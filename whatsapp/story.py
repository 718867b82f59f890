"""A message's story, told from the store: ``flask whatsapp show <id>`` and ``flask whatsapp failed``.

Everything here is read from the store, so it answers "what happened to this customer's message?" from any machine
that reaches the store, without the logs: the state (with the reason when it failed), each attempt with its holder
and timings, the agent that answered, and every reply part with its Graph id and its latest delivery status.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from flask.cli import with_appcontext

from .extension import current_service
from .privacy import mask
from .store import Delivery, Reply, Store

#: What each reply slot of a job holds (see whatsapp.handler); other slots are a subclass's own sends.
SLOT_NAMES = {0: "acknowledgement", 1: "answer", 9: "apology"}


def story(store: Store, message_id: str) -> dict[str, Any] | None:
    """The message's story as plain data (what ``--json`` prints), or None when the store has no such message."""
    stored = store.get(message_id)
    if stored is None:
        return None
    records = store.attempts(message_id)
    replies = stored.replies
    statuses = store.deliveries([reply.wamid for reply in replies if reply.wamid])
    attempts, previous_end = [], stored.received_at
    for record in records:
        attempts.append({**record.as_dict(), "queued_seconds": _seconds(record.claimed_at - previous_end)})
        previous_end = record.ended_at or record.claimed_at
    first_sent = min((a.first_sent_at for a in records if a.first_sent_at), default=None)
    agents = [a.agent for a in records if a.agent]
    message = stored.payload.get("message", {})
    return {
        "id": stored.id,
        "sender": mask(stored.sender),
        "type": message.get("type") if isinstance(message, dict) else None,
        "state": stored.state.value,
        "reason": stored.reason,
        "received_at": stored.received_at,
        "attempts_started": stored.attempts,
        "holder": stored.holder,
        "agent": agents[-1] if agents else None,
        "answer_seconds": _seconds(first_sent - stored.received_at) if first_sent else None,
        "attempts": attempts,
        "replies": [_reply(reply, statuses.get(reply.wamid or "")) for reply in replies],
    }


def _reply(reply: Reply, delivery: Delivery | None) -> dict[str, Any]:
    return {
        "slot": reply.slot,
        "kind": SLOT_NAMES.get(reply.slot, f"reply {reply.slot}"),
        "part": reply.part + 1,
        "characters": len(reply.body),
        "wamid": reply.wamid,
        "status": delivery.status if delivery else ("accepted" if reply.wamid else "not sent"),
        "status_at": delivery.timestamp if delivery else None,
        "error_code": delivery.error_code if delivery else None,
        "error_title": delivery.error_title if delivery else None,
    }


def _seconds(value: float) -> float:
    return round(max(0.0, value), 3)


def _when(unix: float | None) -> str:
    if not unix:
        return "-"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(told: dict[str, Any]) -> str:
    """The story as a person reads it in a terminal."""
    state = told["state"] + (f" ({told['reason']})" if told["reason"] else "")
    lines = [
        f"message {told['id']}",
        f"  from      {told['sender']}, {told['type'] or 'untyped'}, received {_when(told['received_at'])}",
        f"  state     {state}",
    ]
    if told["holder"]:
        lines.append(f"  held by   {told['holder']}")
    if told["agent"]:
        lines.append(f"  agent     {told['agent']}")
    if told["answer_seconds"] is not None:
        lines.append(f"  answered  first part at Graph {told['answer_seconds']:.3f}s after the webhook")
    lines.append(f"  attempts  {told['attempts_started']}")
    recorded = {a["number"]: a for a in told["attempts"]}
    for number in range(1, max([told["attempts_started"], *recorded]) + 1):
        attempt = recorded.get(number)
        if attempt is None:
            running = told["holder"] and number == told["attempts_started"]
            lines.append(f"    #{number} " + ("running" if running else "no record (its worker died or was stopped)"))
            continue
        steps = [attempt["holder"], f"queued {attempt['queued_seconds']:.3f}s"]
        if attempt.get("model_seconds") is not None:
            steps.append(f"model {attempt['model_seconds']:.3f}s ({attempt['agent']})")
        steps.append(f"{attempt['sends']} part(s) sent in {attempt['send_seconds']:.3f}s")
        took = (attempt["ended_at"] or attempt["claimed_at"]) - attempt["claimed_at"]
        outcome = f"{attempt['outcome']} after {took:.3f}s" + (f": {attempt['reason']}" if attempt["reason"] else "")
        lines.append(f"    #{number} " + ", ".join(steps) + f" -> {outcome}")
    lines.append(f"  replies   {len(told['replies']) or 'none'}")
    for reply in told["replies"]:
        status = reply["status"]
        if reply["error_code"] is not None:
            status += f" {reply['error_code']} {reply['error_title'] or ''}".rstrip()
        if reply["status_at"]:
            status += f" at {_when(reply['status_at'])}"
        lines.append(f"    {reply['kind']} part {reply['part']}: {reply['wamid'] or '-'}  {status}")
    return "\n".join(lines)


@click.command()
@click.argument("message")
@click.option("--json", "as_json", is_flag=True, help="Print the story as JSON, for scripts.")
@with_appcontext
def show(message: str, as_json: bool) -> None:
    """What happened to MESSAGE (its WhatsApp id, or the tag logs show for it): state, attempts, agent, reply
    parts and their delivery."""
    store = current_service().store
    told = story(store, store.resolve(message))
    if told is None:
        raise click.ClickException(f"no message {message} in the store (finished messages are kept for retention)")
    click.echo(json.dumps(told, indent=2, ensure_ascii=False) if as_json else render(told))


@click.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many of each.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@with_appcontext
def failed(limit: int, as_json: bool) -> None:
    """The latest failed messages, and the latest replies WhatsApp could not deliver, newest first."""
    store = current_service().store
    messages = store.failed(limit)
    deliveries = store.failed_deliveries(limit)
    if as_json:
        undelivered = [
            {
                "wamid": d.wamid,
                "message_id": d.message_id,
                "recipient": mask(d.recipient),
                "error_code": d.error_code,
                "error_title": d.error_title,
                "status_at": d.timestamp,
            }
            for d in deliveries
        ]
        failures = [
            {"id": m.id, "sender": mask(m.sender), "reason": m.reason, "finished_at": m.finished_at} for m in messages
        ]
        click.echo(json.dumps({"messages": failures, "deliveries": undelivered}, indent=2, ensure_ascii=False))
        return
    click.echo(f"failed messages ({len(messages)}):")
    for m in messages:
        click.echo(f"  {_when(m.finished_at)}  {m.id}  from {mask(m.sender)}: {m.reason}")
    click.echo(f"replies WhatsApp could not deliver ({len(deliveries)}):")
    for d in deliveries:
        answered = f"answering {d.message_id}" if d.message_id else "not in the reply log"
        click.echo(
            f"  {_when(d.timestamp)}  {d.wamid} to {mask(d.recipient)} ({answered}): {d.error_code} {d.error_title}"
        )
    click.echo("`./scripts/whatsapp show <message id or tag>` tells one message's story.")
