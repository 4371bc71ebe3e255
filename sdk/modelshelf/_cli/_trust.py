"""Commands for trust: keys, signatures, approvals and the trust policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from .._errors import InvalidTrustPolicyError
from .._trust import (
    GATES,
    ApprovalInfo,
    SignatureInfo,
    TrustPolicy,
    new_key_pair,
    parse_trust_policy,
    verify_folder,
)
from ._app import AppState, cli, emit_json, json_option, pass_state

__all__ = [
    "approve",
    "key_password_option",
    "keys",
    "sign",
    "signature_rows",
    "trust",
]


def key_password_option(func: Any) -> Any:
    """``--key-password`` (or ``MODELSHELF_KEY_PASSWORD``) for an encrypted private key."""
    return click.option(
        "--key-password",
        envvar="MODELSHELF_KEY_PASSWORD",
        metavar="TEXT",
        default=None,
        help="Password of an encrypted private key (default: $MODELSHELF_KEY_PASSWORD).",
    )(func)


def signature_rows(signatures: list[SignatureInfo]) -> list[dict[str, Any]]:
    """Signatures as the JSON rows ``show`` and ``sign`` print."""
    return [
        {
            "key_id": s.key_id,
            "signer": s.signer,
            "valid": s.valid,
            "trusted": s.trusted,
            "problem": s.problem,
        }
        for s in signatures
    ]


def approval_rows(approvals: list[ApprovalInfo]) -> list[dict[str, Any]]:
    """Approvals as JSON rows."""
    return [
        {
            "gate": a.gate,
            "key_id": a.key_id,
            "approver": a.approver,
            "approved_by": a.approved_by,
            "approved_at": a.approved_at,
            "comment": a.comment,
            "valid": a.valid,
            "problem": a.problem,
        }
        for a in approvals
    ]


def _print(state: AppState, text: str) -> None:
    state.console.print(Text(text))


@cli.command()
@click.argument("ref")
@click.option("--key", "key", metavar="PEM", help="Sign with this EC private key.")
@click.option(
    "--bundle",
    metavar="FILE",
    help="Store a bundle made by 'model_signing sign key' over the pulled folder instead.",
)
@click.option("--public-key", metavar="PEM", help="With --bundle: the key that made it.")
@key_password_option
@json_option
@pass_state
def sign(
    state: AppState,
    ref: str,
    key: str | None,
    bundle: str | None,
    public_key: str | None,
    key_password: str | None,
    as_json: bool,
) -> None:
    """Sign version REF (an OMS bundle built from its manifest; no file is re-read)."""
    if (key is None) == (bundle is None):
        raise click.UsageError("give either --key PEM or --bundle FILE --public-key PEM")
    registry = state.registry
    resolved = registry.resolve(ref)
    if bundle is not None:
        if public_key is None:
            raise click.UsageError("--bundle needs --public-key, the key that made it")
        stored = registry.attach_signature(resolved, bundle, public_key)
    else:
        assert key is not None
        stored = registry.sign(resolved, key, password=key_password)
    signatures = registry.signatures(resolved)
    if as_json:
        emit_json({"ref": str(resolved), "key": stored, "signatures": signature_rows(signatures)})
        return
    _print(state, f"signed {resolved}: {stored}")


@cli.command()
@click.argument("ref")
@click.option("--key", "key", required=True, metavar="PEM", help="Your EC private key.")
@click.option(
    "--gate",
    type=click.Choice(list(GATES)),
    default="promote",
    show_default=True,
    help="The step approved: starting a canary, or making the version active.",
)
@click.option("--comment", metavar="TEXT", help="Why (kept in the signed record).")
@key_password_option
@json_option
@pass_state
def approve(
    state: AppState,
    ref: str,
    key: str,
    gate: str,
    comment: str | None,
    key_password: str | None,
    as_json: bool,
) -> None:
    """Write a signed approval of version REF for a gate of the trust policy."""
    registry = state.registry
    resolved = registry.resolve(ref)
    stored = registry.approve(
        resolved,
        key,
        gate=gate,  # type: ignore[arg-type]
        comment=comment,
        password=key_password,
    )
    approvals = registry.approvals(resolved, gate)  # type: ignore[arg-type]
    if as_json:
        emit_json({"ref": str(resolved), "key": stored, "approvals": approval_rows(approvals)})
        return
    valid = sorted({a.approver or a.key_id[:16] for a in approvals if a.valid})
    _print(state, f"approved {resolved} for {gate}: {stored} (valid: {', '.join(valid) or 'none'})")


@cli.group()
def keys() -> None:
    """Signing keys."""


@keys.command("new")
@click.argument("name")
@click.option(
    "--dir", "directory", default=".", show_default=True, metavar="DIR", help="Where to write."
)
@key_password_option
@json_option
@pass_state
def keys_new(
    state: AppState, name: str, directory: str, key_password: str | None, as_json: bool
) -> None:
    """Make an EC P-256 key: NAME.pem (private, mode 0600) and NAME.pub.pem."""
    pair = new_key_pair(directory, name, password=key_password)
    if as_json:
        emit_json(
            {
                "private_key": str(pair.private_path),
                "public_key": str(pair.public_path),
                "key_id": pair.key_id,
            }
        )
        return
    _print(state, f"wrote {pair.private_path} (keep it secret) and {pair.public_path}")
    _print(state, f"key id {pair.key_id}")


@cli.group()
def trust() -> None:
    """The trust policy: trusted keys, required signatures, pickle, approval gates."""


def _policy_json(policy: TrustPolicy, source: str) -> dict[str, Any]:
    return {**policy.model_dump(mode="json"), "source": source}


@trust.command("show")
@json_option
@pass_state
def trust_show(state: AppState, as_json: bool) -> None:
    """Show the policy in force and where it comes from (pinned file or trust.json)."""
    policy, source = state.registry.trust_policy_source()
    if as_json:
        # What 'trust set' takes back: edit it and keep its generation.
        emit_json(policy.model_dump(mode="json", exclude_none=True))
        return
    _print(state, f"trust policy: {source}")
    required = [u for u in ("load", "pull", "serve", "alias") if policy.requires(u)]
    _print(state, f"signature required for: {', '.join(required) or 'nothing'}")
    _print(state, f"pickle allowed: {'yes' if policy.allow_pickle else 'no'}")
    for gate, rule in sorted(policy.approvals.items()):
        _print(state, f"gate {gate}: {rule.required} of {', '.join(rule.keys)}")
    signers = {k.name for k in policy.signing_keys()}
    table = Table("key", "key id", "signs versions")
    for key in policy.keys:
        table.add_row(Text(key.name), key.id[:16], "yes" if key.name in signers else "no")
    state.console.print(table)


@trust.command("set")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--reason", metavar="TEXT", help="Kept in the policy's history.")
@json_option
@pass_state
def trust_set(state: AppState, file: str, reason: str | None, as_json: bool) -> None:
    """Store FILE as the registry's trust.json.

    FILE keeps the generation 'trust show --json' printed: a policy changed by someone else
    since is refused (exit 32) instead of overwritten.
    """
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise InvalidTrustPolicyError(f"cannot read {file}: {exc.strerror}") from exc
    stored = state.registry.set_trust_policy(parse_trust_policy(data, file), reason=reason)
    if as_json:
        emit_json(stored.model_dump(mode="json"))
        return
    _print(state, f"trust policy is now generation {stored.generation} in {state.registry.uri}")


@trust.command("add-key")
@click.argument("name")
@click.argument("public_key", metavar="PUB.pem")
@click.option(
    "--approver-only",
    is_flag=True,
    help="Trust the key for approvals only: its signatures do not make a version trusted.",
)
@click.option("--reason", metavar="TEXT", help="Kept in the policy's history.")
@json_option
@pass_state
def trust_add_key(
    state: AppState,
    name: str,
    public_key: str,
    approver_only: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Add the public key PUB.pem to trust.json under NAME."""
    stored = state.registry.add_trusted_key(
        name, public_key, signer=not approver_only, reason=reason
    )
    if as_json:
        emit_json(stored.model_dump(mode="json"))
        return
    key = stored.key(name)
    assert key is not None
    _print(state, f"trusted {name} ({key.id[:16]}); trust policy generation {stored.generation}")


@trust.command("history")
@json_option
@pass_state
def trust_history(state: AppState, as_json: bool) -> None:
    """Every trust.json ever stored: generation, who, when, why."""
    records = state.registry.trust_history()
    if as_json:
        emit_json([r.model_dump(mode="json") for r in records])
        return
    table = Table("generation", "updated at", "by", "reason", "keys")
    for r in records:
        table.add_row(
            str(r.generation),
            r.updated_at.isoformat() if r.updated_at else "",
            Text(r.updated_by or ""),
            Text(r.reason or ""),
            Text(", ".join(k.name for k in r.keys)),
        )
    state.console.print(table)


@trust.command("verify-folder")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="PEM",
    help="Check against these keys instead of the policy's signers.",
)
@json_option
@pass_state
def trust_verify_folder(
    state: AppState, folder: str, public_keys: tuple[str, ...], as_json: bool
) -> None:
    """Check FOLDER/model.sig against every file in FOLDER (what a signed pull wrote)."""
    from .._trust._ops import key_entry

    if public_keys:
        candidates = [key_entry(f"key-{i + 1}", p) for i, p in enumerate(public_keys)]
    else:
        candidates = state.registry.trust_policy().signing_keys()
    key = verify_folder(folder, candidates)
    if as_json:
        emit_json({"folder": folder, "ok": True, "signer": key.name, "key_id": key.id})
        return
    _print(state, f"ok {folder}: every file matches the signature by {key.name}")
