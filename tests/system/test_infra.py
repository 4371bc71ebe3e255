"""infra/: the AWS stack, its least-privilege policies and the Lambda package, without AWS.

What is verified here, and how:

- ``cfn-lint`` (every level, informational included) accepts ``infra/template.yaml``.
- The template deploys into moto's CloudFormation (``mock_aws``, in process), with and without
  a registry prefix. moto has no SAM transform, so :func:`expand_sam` does what the transform
  does for the template's one ``AWS::Serverless::Function`` (explicit role, no events: one
  ``AWS::Lambda::Function``) and refuses any property that would make SAM generate more.
  moto creates neither ``AWS::S3::BucketPolicy`` nor ``AWS::CloudWatch::Alarm`` and applies
  only the encryption of a bucket's properties, so those parts are checked on the template
  resolved against the deployed stack (same parameters, same conditions).
- With moto's IAM enforcement on, boto3 clients holding assumed-role credentials (a trainer
  and a server role with the stack's managed policies attached, and the promoter Lambda's own
  execution role) are allowed exactly what the matrix says and refused the rest. moto matches
  actions and resources but skips every condition operator except StringEquals, so each case
  is also decided by :func:`decide`, a small model of IAM's documented evaluation that does
  apply the ``s3:prefix`` conditions.
- moto does not know ``s3:if-none-match`` (a Deny conditioned on it refuses the conditional
  put too), so the bucket policy is tested as a document: its statements, resources and
  multipart exemption, and :func:`decide` on the requests it must refuse or let through.
- The real SDK pushes, sets aliases and serves (load, poll, flush metrics) under the roles;
  the promoter handler, once it exists, runs in process on a scheduled event rendered
  through the deployed rule's input transformer, with the execution role's credentials.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import re
import sys
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from packaging.requirements import Requirement

from modelshelf import (
    AccessDeniedError,
    ModelshelfError,
    Registry,
    TrustedKey,
    TrustPolicy,
    new_key_pair,
)
from modelshelf.serving import ModelServer

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "template.yaml"
ROLES = ("trainer", "server", "promoter", "operator")
SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# Properties SAM copies onto the AWS::Lambda::Function unchanged (CodeUri becomes Code).
SAM_PASSTHROUGH = {
    "Architectures",
    "Description",
    "Environment",
    "Handler",
    "LoggingConfig",
    "MemorySize",
    "Role",
    "Runtime",
    "Timeout",
}
# The types moto's CloudFormation skips; anything else skipped would be a silent hole.
MOTO_UNSUPPORTED = {"AWS::S3::BucketPolicy", "AWS::CloudWatch::Alarm"}


def _load_build_script() -> ModuleType:
    path = REPO / "infra" / "build.py"
    spec = importlib.util.spec_from_file_location("modelshelf_infra_build", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


build = _load_build_script()


def load_template() -> dict[str, Any]:
    """The template as plain data, short-form tags (``!Sub``...) in their long form."""
    from cfnlint.decode.cfn_yaml import loads

    return json.loads(json.dumps(loads(TEMPLATE.read_text(encoding="utf-8"))))


def expand_sam(template: dict[str, Any], code_bucket: str, code_key: str) -> dict[str, Any]:
    """Expand the SAM function as the transform would, with its code at ``s3://bucket/key``.

    Only the shape used by the template is supported: an ``AWS::Serverless::Function`` with
    an explicit ``Role`` and no ``Events``, ``Policies`` or ``Globals``, for which SAM emits
    one ``AWS::Lambda::Function`` under the same logical id.
    """
    expanded = copy.deepcopy(template)
    assert expanded.pop("Transform", None) == SAM_TRANSFORM, "the template lost its SAM transform"
    assert "Globals" not in expanded, "SAM Globals are not modelled by expand_sam"
    for logical_id, resource in expanded["Resources"].items():
        if not resource["Type"].startswith("AWS::Serverless::"):
            continue
        assert resource["Type"] == "AWS::Serverless::Function", (
            f"{logical_id}: expand_sam only knows AWS::Serverless::Function"
        )
        props = resource["Properties"]
        extra = set(props) - SAM_PASSTHROUGH - {"CodeUri"}
        assert not extra, (
            f"{logical_id}: SAM would generate more than one function for {sorted(extra)}; "
            "teach expand_sam or keep those resources in plain CloudFormation"
        )
        assert "Role" in props, f"{logical_id}: without Role, SAM generates a role"
        del props["CodeUri"]
        props["Code"] = {"S3Bucket": code_bucket, "S3Key": code_key}
        resource["Type"] = "AWS::Lambda::Function"
    return expanded


# --- a model of IAM policy evaluation ---------------------------------------------------------

Decision = Literal["allow", "deny", "implicit-deny"]


def _wildcard(pattern: str) -> re.Pattern[str]:
    # IAM: '*' is any run of characters ('/' included), '?' exactly one; nothing else is special.
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
        re.DOTALL,
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    present = key.lower() in context
    actual = context.get(key.lower())
    if operator == "Null":
        return _as_list(expected) == ["true"] if not present else _as_list(expected) == ["false"]
    if not present:
        return False  # no ...IfExists operator is used
    if operator == "Bool":
        return any(actual == str(e).lower() for e in _as_list(expected))
    if operator == "StringEquals":
        return any(actual == e for e in _as_list(expected))
    if operator == "StringLike":
        return any(_wildcard(e).fullmatch(str(actual)) for e in _as_list(expected))
    raise AssertionError(f"decide() does not model the condition operator {operator}")


def _substitute(pattern: str, context: dict[str, str]) -> str | None:
    """A resource pattern with its ``${key}`` policy variables filled from the request;
    ``None`` when the request lacks one, which makes the statement not apply (IAM: an
    unresolved variable in Resource matches nothing)."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = context.get(match.group(1).lower())
        if value is None:
            missing = True
            return ""
        assert not set(value) & {"*", "?"}, f"decide() takes no wildcard in {value!r}"
        return value

    filled = re.sub(r"\$\{([^}]+)\}", fill, pattern)
    return None if missing else filled


def decide(
    documents: list[dict[str, Any]], action: str, resource: str, context: dict[str, str]
) -> Decision:
    """IAM's answer for one request: an explicit Deny wins, then any Allow, else no.

    ``context`` maps condition keys (any case) to the request's values; a key that is absent
    is absent from the request. Models Action/Resource wildcards and the Null, Bool,
    StringEquals and StringLike operators, and fails on anything else it meets.
    """
    ctx = {k.lower(): v for k, v in context.items()}
    decision: Decision = "implicit-deny"
    for document in documents:
        for statement in _as_list(document["Statement"]):
            for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
                assert unsupported not in statement, f"decide() does not model {unsupported}"
            if not any(
                _wildcard(a.lower()).fullmatch(action.lower())
                for a in _as_list(statement["Action"])
            ):
                continue
            patterns = [_substitute(r, ctx) for r in _as_list(statement["Resource"])]
            if not any(p is not None and _wildcard(p).fullmatch(resource) for p in patterns):
                continue
            conditions = statement.get("Condition", {})
            if not all(
                _condition_holds(op, key, expected, ctx)
                for op, pairs in conditions.items()
                for key, expected in pairs.items()
            ):
                continue
            if statement["Effect"] == "Deny":
                return "deny"
            decision = "allow"
    return decision


# --- deploying the stack into moto ------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One set of stack parameters."""

    id: str
    prefix: str
    models_to_watch: str
    metrics_expiry_models: str
    bind_server_identity: str = "false"


VARIANTS = [
    Variant("top-level", prefix="", models_to_watch="", metrics_expiry_models="iris,churn"),
    Variant(
        "prefixed", prefix="ml/registry", models_to_watch="iris,churn", metrics_expiry_models="iris"
    ),
]


@dataclass(frozen=True)
class RoleCredentials:
    """Temporary credentials of an assumed role."""

    access_key_id: str
    secret_access_key: str
    session_token: str

    def client(self, service: str = "s3") -> Any:
        """A boto3 client acting as the role."""
        return boto3.client(
            service,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
        )

    def env(self) -> dict[str, str]:
        """The variables that make the default credential chain act as the role."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }


@dataclass
class DeployedStack:
    """A stack deployed into the active moto mock, with a credential set per role."""

    variant: Variant
    name: str
    bucket: str
    registry_uri: str
    outputs: dict[str, str]
    template: dict[str, Any]
    role_arns: dict[str, str]
    credentials: dict[str, RoleCredentials]
    function: dict[str, Any] = field(default_factory=dict)
    """The promoter function's configuration, read at deploy."""
    schedule_target: dict[str, Any] = field(default_factory=dict)
    """The schedule rule's one target, read at deploy."""
    policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Every policy document in effect for each role (attached and inline), read at deploy."""
    skipped_types: set[str] = field(default_factory=set)

    @property
    def root(self) -> str:
        """The key prefix of the registry root ('' or 'prefix/')."""
        return f"{self.variant.prefix}/" if self.variant.prefix else ""

    def key(self, relative: str) -> str:
        """The bucket key of a registry-relative key."""
        return self.root + relative

    def object_arn(self, key: str) -> str:
        return f"arn:aws:s3:::{self.bucket}/{key}"

    def resolve(self, fragment: Any) -> Any:
        """Evaluate a template fragment's intrinsic functions as moto did for this stack.

        ``AWS::NoValue`` comes back as ``None`` inside lists (moto keeps the slot).
        """
        from moto.cloudformation.models import cloudformation_backends
        from moto.cloudformation.parsing import clean_json

        stacks = cloudformation_backends[ACCOUNT_ID][REGION].stacks.values()
        stack = next(s for s in stacks if s.name == self.name)
        return clean_json(copy.deepcopy(fragment), stack.resource_map)


def _document(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else value


def _role_policies(iam: Any, role_arn: str) -> list[dict[str, Any]]:
    name = role_arn.rsplit("/", 1)[1]
    documents = []
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(
            PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
        )
        documents.append(_document(version["PolicyVersion"]["Document"]))
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        inline = iam.get_role_policy(RoleName=name, PolicyName=policy_name)
        documents.append(_document(inline["PolicyDocument"]))
    return documents


def _stub_code_zip() -> bytes:
    # The function is never invoked through moto (that needs Docker); the zip must only exist.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("modelshelf_promoter/handler.py", "def lambda_handler(event, context):\n")
    return buf.getvalue()


def deploy(variant: Variant, name: str) -> DeployedStack:
    """Deploy the template into the active moto mock and assume each role.

    Must run with IAM enforcement off: it acts with the ambient test credentials.
    """
    bucket = f"{name}-registry"
    s3 = boto3.client("s3", region_name=REGION)
    artifacts = f"{name}-artifacts"
    s3.create_bucket(Bucket=artifacts)
    s3.put_object(Bucket=artifacts, Key="promoter.zip", Body=_stub_code_zip())

    template = expand_sam(load_template(), artifacts, "promoter.zip")
    parameters = {
        "BucketName": bucket,
        "RegistryPrefix": variant.prefix,
        "ModelsToWatch": variant.models_to_watch,
        "MetricsExpiryModels": variant.metrics_expiry_models,
        "BindServerIdentity": variant.bind_server_identity,
    }
    cfn = boto3.client("cloudformation", region_name=REGION)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
    skipped = {
        m.group(1)
        for w in caught
        if (m := re.search(r"parse (\S+) but it's not supported", str(w.message)))
    }
    described = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE", (
        f"stack {name} did not deploy: {described.get('StackStatusReason')}"
    )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}

    # What a team does for its own principals: roles that attach the stack's policies.
    iam = boto3.client("iam", region_name=REGION)
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    role_arns = {"promoter": outputs["PromoterRoleArn"]}
    for role, output in (
        ("trainer", "TrainerPolicyArn"),
        ("server", "ServerPolicyArn"),
        ("operator", "OperatorPolicyArn"),
    ):
        arn = iam.create_role(RoleName=f"{name}-{role}", AssumeRolePolicyDocument=trust)["Role"][
            "Arn"
        ]
        iam.attach_role_policy(RoleName=f"{name}-{role}", PolicyArn=outputs[output])
        role_arns[role] = arn
    sts = boto3.client("sts", region_name=REGION)
    credentials = {}
    for role, arn in role_arns.items():
        c = sts.assume_role(RoleArn=arn, RoleSessionName=f"{role}-session")["Credentials"]
        credentials[role] = RoleCredentials(
            c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]
        )
    # Read now: with IAM enforced, only the roles' credentials work.
    function = boto3.client("lambda", region_name=REGION).get_function_configuration(
        FunctionName=outputs["PromoterFunctionName"]
    )
    rule_name = outputs["PromoterScheduleRuleArn"].rsplit("/", 1)[1]
    targets = boto3.client("events", region_name=REGION).list_targets_by_rule(Rule=rule_name)
    return DeployedStack(
        variant=variant,
        name=name,
        bucket=bucket,
        registry_uri=outputs["RegistryUri"],
        outputs=outputs,
        template=template,
        role_arns=role_arns,
        credentials=credentials,
        function=function,
        schedule_target=targets["Targets"][0],
        policies={role: _role_policies(iam, arn) for role, arn in role_arns.items()},
        skipped_types=skipped,
    )


# Objects the access matrix reads, under a model of their own ('acl').
BLOB = "acl/blobs/sha256/" + "ab" * 32
NEW_BLOB = "acl/blobs/sha256/" + "cd" * 32
METRICS = "acl/metrics/1.0.0/20260101T000000Z/web-1-00000000.json"
NEW_METRICS = "acl/metrics/1.0.0/20260101T000000Z/web-1-00000001.json"
SEEDED = [
    "acl/aliases.json",
    "acl/versions/1.0.0.json",
    BLOB,
    "acl/history/000000000001.json",
    METRICS,
    "acl/promoter/policy.json",
    "acl/promoter/state.json",
]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v.id)
def deployed_stack(request: pytest.FixtureRequest) -> Iterator[DeployedStack]:
    """The stack in moto (IAM not enforced unless a test asks), seeded for the matrix."""
    variant: Variant = request.param
    with mock_aws():
        stack = deploy(variant, f"shelf-{variant.id}")
        s3 = boto3.client("s3", region_name=REGION)
        for key in SEEDED:
            s3.put_object(Bucket=stack.bucket, Key=stack.key(key), Body=b"{}")
        yield stack


@pytest.fixture
def iam_enforced(deployed_stack: DeployedStack, monkeypatch: pytest.MonkeyPatch) -> DeployedStack:
    """Turn moto's IAM enforcement on for one test.

    The same switch as moto's ``set_initial_no_auth_action_count(0)``: from the next request
    on, every call is authenticated and checked against the caller's policies.
    """
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    return deployed_stack


@pytest.fixture
def fresh_stack(
    deployed_stack: DeployedStack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DeployedStack]:
    """A second, empty stack (own bucket and roles) in the same mock, IAM enforced."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    stack = deploy(deployed_stack.variant, f"fresh-{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    yield stack


# --- the template itself ----------------------------------------------------------------------


def test_template_passes_cfn_lint() -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE, config=ManualArgs(include_checks=["I"]))
    assert not matches, "cfn-lint findings:\n" + "\n".join(str(m) for m in matches)


def test_code_uri_is_what_the_build_script_writes() -> None:
    code_uri = load_template()["Resources"]["PromoterFunction"]["Properties"]["CodeUri"]
    written = build.DEFAULT_OUT.relative_to(TEMPLATE.parent).as_posix()
    assert code_uri == written, f"CodeUri {code_uri!r} is not the zip infra/build.py writes"


# --- the deployment ---------------------------------------------------------------------------


def test_stack_creates_bucket_policies_function_and_schedule(deployed_stack: DeployedStack) -> None:
    stack = deployed_stack
    assert stack.skipped_types == MOTO_UNSUPPORTED, (
        f"moto skipped {sorted(stack.skipped_types)}; the tests assume exactly "
        f"{sorted(MOTO_UNSUPPORTED)} and check those as documents"
    )
    s3 = boto3.client("s3", region_name=REGION)
    rules = s3.get_bucket_encryption(Bucket=stack.bucket)["ServerSideEncryptionConfiguration"]
    algorithm = rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    assert algorithm == "AES256", f"bucket default encryption is {algorithm}, not SSE-S3"
    expected_uri = f"s3://{stack.bucket}" + (f"/{stack.variant.prefix}" if stack.root else "")
    assert stack.registry_uri == expected_uri, f"RegistryUri output is {stack.registry_uri}"

    iam = boto3.client("iam", region_name=REGION)
    for output in ("TrainerPolicyArn", "ServerPolicyArn", "PromoterPolicyArn", "OperatorPolicyArn"):
        iam.get_policy(PolicyArn=stack.outputs[output])  # raises if it was not created
    role_name = stack.role_arns["promoter"].rsplit("/", 1)[1]
    attached = {
        p["PolicyArn"]
        for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    }
    assert stack.outputs["PromoterPolicyArn"] in attached, "the Lambda role lacks its policy"
    assert len(attached) == 2, f"the Lambda role has {sorted(attached)}"
    assert not iam.list_role_policies(RoleName=role_name)["PolicyNames"], "inline policies"
    logs_grants = [
        s
        for doc in stack.policies["promoter"]
        for s in doc["Statement"]
        if any(a.startswith("logs:") for a in _as_list(s["Action"]))
    ]
    log_group_arn = (
        f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/modelshelf/{stack.name}/promoter"
    )
    assert logs_grants == [
        {
            "Sid": "WriteOwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": log_group_arn + ":*",
        }
    ], f"the promoter's log permissions: {logs_grants}"

    function = boto3.client("lambda", region_name=REGION).get_function_configuration(
        FunctionName=stack.outputs["PromoterFunctionName"]
    )
    assert function["Runtime"] == "python3.12", f"runtime is {function['Runtime']}"
    assert function["Handler"] == "modelshelf_promoter.handler.lambda_handler", (
        f"handler is {function['Handler']}"
    )
    assert function["Role"] == stack.role_arns["promoter"], "the function runs as another role"
    env = function["Environment"]["Variables"]
    assert env == {"MODELSHELF_REGISTRY": stack.registry_uri}, f"function environment is {env}"

    events = boto3.client("events", region_name=REGION)
    rule_name = stack.outputs["PromoterScheduleRuleArn"].rsplit("/", 1)[1]
    rule = events.describe_rule(Name=rule_name)
    assert rule["ScheduleExpression"] == "rate(5 minutes)", f"schedule is {rule}"
    assert rule["State"] == "ENABLED", f"the schedule is {rule['State']}"
    targets = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert [t["Arn"] for t in targets] == [function["FunctionArn"]], (
        f"the schedule targets {targets}, not the promoter"
    )
    permission = json.loads(
        boto3.client("lambda", region_name=REGION).get_policy(
            FunctionName=function["FunctionName"]
        )["Policy"]
    )["Statement"][0]
    assert permission["Principal"] == {"Service": "events.amazonaws.com"}, f"{permission}"
    assert permission["Condition"]["ArnLike"]["AWS:SourceArn"] == rule["Arn"], (
        "EventBridge may invoke the promoter from rules other than the schedule"
    )

    groups = boto3.client("logs", region_name=REGION).describe_log_groups(
        logGroupNamePrefix=stack.outputs["PromoterLogGroupName"]
    )["logGroups"]
    assert [g.get("retentionInDays") for g in groups] == [30], f"log groups: {groups}"


def _scheduled_event(rule_arn: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule_arn],
        "detail": {},
    }


def render_input_transformer(transformer: dict[str, Any], event: dict[str, Any]) -> Any:
    """What EventBridge delivers: each ``<name>`` replaced by the JSON of its ``$.path``."""
    values = {}
    for name, path in transformer["InputPathsMap"].items():
        assert re.fullmatch(r"\$\.[A-Za-z0-9_-]+", path), f"unsupported input path {path}"
        values[name] = event[path[2:]]
    text = re.sub(
        r"<([A-Za-z0-9_.-]+)>",
        lambda m: json.dumps(values[m.group(1)]),
        transformer["InputTemplate"],
    )
    return json.loads(text)


def scheduled_payload(stack: DeployedStack) -> dict[str, Any]:
    """The event the deployed schedule would hand the promoter right now."""
    event = _scheduled_event(stack.outputs["PromoterScheduleRuleArn"])
    transformer = stack.schedule_target["InputTransformer"]
    payload: dict[str, Any] = render_input_transformer(transformer, event)
    assert {k: payload[k] for k in event} == event, (
        f"the scheduled event's own fields were not passed through: {payload}"
    )
    return payload


def test_schedule_delivers_the_event_the_promoter_expects(deployed_stack: DeployedStack) -> None:
    payload = scheduled_payload(deployed_stack)
    assert payload["source"] == "aws.events" and payload["detail-type"] == "Scheduled Event", (
        f"not a scheduled event: {payload}"
    )
    assert payload["registry"] == deployed_stack.registry_uri, f"registry is {payload}"
    watched = deployed_stack.variant.models_to_watch
    if watched:
        assert payload["models"] == watched.split(","), f"models are {payload.get('models')}"
    else:
        assert "models" not in payload, "an empty ModelsToWatch must mean every canary"


def test_bucket_properties_moto_does_not_apply(deployed_stack: DeployedStack) -> None:
    stack = deployed_stack
    props = stack.resolve(stack.template["Resources"]["RegistryBucket"]["Properties"])
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}, "versioning is off"
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    ), "public access is not fully blocked"
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    rules = [r for r in props["LifecycleConfiguration"]["Rules"] if r is not None]
    by_id = {r["Id"]: r for r in rules}
    assert by_id["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }, "incomplete multipart uploads are not aborted after 7 days"
    assert "Prefix" not in by_id["abort-incomplete-multipart-uploads"], "abort rule is scoped"
    metric_rules = sorted(
        (r["Prefix"], r["ExpirationInDays"]) for r in rules if r["Id"].startswith("expire-metrics")
    )
    wanted = sorted(
        (stack.key(f"{m}/metrics/"), 30) for m in stack.variant.metrics_expiry_models.split(",")
    )
    assert metric_rules == wanted, f"metric expiry rules {metric_rules}, expected {wanted}"


def test_error_alarm_watches_the_promoter(deployed_stack: DeployedStack) -> None:
    stack = deployed_stack
    alarm = stack.resolve(stack.template["Resources"]["PromoterErrorsAlarm"]["Properties"])
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors"), f"{alarm}"
    assert alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": stack.outputs["PromoterFunctionName"]}
    ], f"the alarm watches {alarm['Dimensions']}"
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    ), "the alarm does not fire on the first error"
    assert alarm["TreatMissingData"] == "notBreaching", "idle periods would raise the alarm"


# --- the bucket policy, as a document ---------------------------------------------------------


def _bucket_policy(stack: DeployedStack) -> dict[str, Any]:
    resource = stack.template["Resources"]["RegistryBucketPolicy"]
    policy: dict[str, Any] = stack.resolve(resource["Properties"]["PolicyDocument"])
    return policy


def test_bucket_policy_statements(deployed_stack: DeployedStack) -> None:
    stack = deployed_stack
    statements = {s["Sid"]: s for s in _bucket_policy(stack)["Statement"]}
    assert set(statements) == {
        "DenyInsecureTransport",
        "DenyOverwritableWritesToWriteOnceKeys",
        "DenyBlindWritesToSwappedKeys",
        "DenyDeletingTheRecord",
    }, f"bucket policy statements: {sorted(statements)}"
    assert all(s["Effect"] == "Deny" and s["Principal"] == "*" for s in statements.values()), (
        "every bucket-policy statement must be a Deny for everyone"
    )
    tls = statements["DenyInsecureTransport"]
    assert tls["Action"] == "s3:*" and tls["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }, f"TLS statement: {tls}"
    assert sorted(tls["Resource"]) == sorted(
        [f"arn:aws:s3:::{stack.bucket}", f"arn:aws:s3:::{stack.bucket}/*"]
    ), "TLS-only does not cover the bucket and every object"

    once = statements["DenyOverwritableWritesToWriteOnceKeys"]
    assert once["Action"] == "s3:PutObject", f"write-once statement acts on {once['Action']}"
    assert sorted(once["Resource"]) == sorted(
        [
            *(
                stack.object_arn(stack.key(f"*/{ns}/*"))
                for ns in ("versions", "blobs", "history", "signatures", "approvals", "metrics")
            ),
            stack.object_arn(stack.key("_trust/history/*")),
        ]
    ), f"write-once resources: {once['Resource']}"
    # The documented form: deny when the header is absent, but only for the operations that
    # create the object (PutObject, CompleteMultipartUpload), never for the parts.
    assert once["Condition"] == {
        "Null": {"s3:if-none-match": "true"},
        "Bool": {"s3:ObjectCreationOperation": "true"},
    }, f"write-once condition: {once['Condition']}"

    swapped = statements["DenyBlindWritesToSwappedKeys"]
    assert sorted(swapped["Resource"]) == sorted(
        stack.object_arn(stack.key(k))
        for k in (
            "*/aliases.json",
            "*/promoter/policy.json",
            "*/promoter/state.json",
            "trust.json",
        )
    ), f"swapped-key resources: {swapped['Resource']}"
    assert swapped["Condition"] == {
        "Null": {"s3:if-none-match": "true", "s3:if-match": "true"},
        "Bool": {"s3:ObjectCreationOperation": "true"},
    }, f"swapped-key condition: {swapped['Condition']}"

    record = statements["DenyDeletingTheRecord"]
    assert sorted(record["Action"]) == ["s3:DeleteObject", "s3:DeleteObjectVersion"], record
    assert sorted(record["Resource"]) == sorted(
        stack.object_arn(stack.key(f"*/{ns}/*")) for ns in ("versions", "history")
    ), f"undeletable resources: {record['Resource']}"
    assert "Condition" not in record, "the record must be undeletable unconditionally"


# (key, s3:ObjectCreationOperation, conditional header, expected) for PutObject over TLS.
# ObjectCreationOperation is true for PutObject and CompleteMultipartUpload, false for
# CreateMultipartUpload, UploadPart and UploadPartCopy.
BUCKET_POLICY_CASES = [
    ("iris/versions/1.0.0.json", "true", None, "deny"),
    ("iris/versions/1.0.0.json", "true", "if-none-match", "implicit-deny"),
    ("iris/blobs/sha256/" + "ab" * 32, "true", None, "deny"),  # PutObject/Complete, bare
    ("iris/blobs/sha256/" + "ab" * 32, "true", "if-none-match", "implicit-deny"),
    ("iris/blobs/sha256/" + "ab" * 32, "false", None, "implicit-deny"),  # a part upload
    ("iris/history/000000000002.json", "true", None, "deny"),
    ("iris/history/000000000002.json", "true", "if-none-match", "implicit-deny"),
    ("iris/aliases.json", "true", None, "deny"),
    ("iris/aliases.json", "true", "if-match", "implicit-deny"),
    ("iris/aliases.json", "true", "if-none-match", "implicit-deny"),
    ("iris/promoter/state.json", "true", None, "deny"),
    ("iris/promoter/state.json", "true", "if-match", "implicit-deny"),
    ("iris/promoter/policy.json", "true", None, "deny"),
    ("iris/promoter/policy.json", "true", "if-none-match", "implicit-deny"),
    ("iris/promoter/decisions/20260101T000000Z.json", "true", None, "implicit-deny"),
    # metrics are write-once too: a server must not replace another's (or its own) summary
    ("iris/metrics/1.0.0/20260101T000000Z/web-1-00000000.json", "true", None, "deny"),
    (
        "iris/metrics/1.0.0/20260101T000000Z/web-1-00000000.json",
        "true",
        "if-none-match",
        "implicit-deny",
    ),
    ("iris/signatures/1.0.0/" + "cd" * 32 + ".sig", "true", None, "deny"),
    ("iris/signatures/1.0.0/" + "cd" * 32 + ".sig", "true", "if-none-match", "implicit-deny"),
    ("iris/approvals/1.0.0/promote/" + "cd" * 32 + ".sig", "true", None, "deny"),
    ("trust.json", "true", None, "deny"),
    ("trust.json", "true", "if-match", "implicit-deny"),
    ("_trust/history/000000000002.json", "true", None, "deny"),
    ("_trust/history/000000000002.json", "true", "if-none-match", "implicit-deny"),
]


@pytest.mark.parametrize(("key", "creation", "header", "expected"), BUCKET_POLICY_CASES)
def test_bucket_policy_decisions(
    deployed_stack: DeployedStack, key: str, creation: str, header: str | None, expected: str
) -> None:
    stack = deployed_stack
    context = {"aws:SecureTransport": "true", "s3:ObjectCreationOperation": creation}
    if header == "if-none-match":
        context["s3:if-none-match"] = "*"
    elif header == "if-match":
        context["s3:if-match"] = '"0123abcd"'
    got = decide([_bucket_policy(stack)], "s3:PutObject", stack.object_arn(stack.key(key)), context)
    assert got == expected, (
        f"bucket policy on PutObject {key} (creation={creation}, header={header}): {got}"
    )


# (action, key, expected) for deletes over TLS: the record is never deleted, whoever asks;
# blobs are what gc deletes.
BUCKET_POLICY_DELETES = [
    ("s3:DeleteObject", "iris/versions/1.0.0.json", "deny"),
    ("s3:DeleteObjectVersion", "iris/versions/1.0.0.json", "deny"),
    ("s3:DeleteObject", "iris/history/000000000001.json", "deny"),
    ("s3:DeleteObjectVersion", "iris/history/000000000001.json", "deny"),
    ("s3:DeleteObject", "_trust/history/000000000001.json", "deny"),
    ("s3:DeleteObject", "iris/blobs/sha256/" + "ab" * 32, "implicit-deny"),
    ("s3:DeleteObject", "iris/metrics/1.0.0/20260101T000000Z/web-1-00000000.json", "implicit-deny"),
]


@pytest.mark.parametrize(("action", "key", "expected"), BUCKET_POLICY_DELETES)
def test_bucket_policy_never_lets_the_record_be_deleted(
    deployed_stack: DeployedStack, action: str, key: str, expected: str
) -> None:
    stack = deployed_stack
    context = {"aws:SecureTransport": "true"}
    got = decide([_bucket_policy(stack)], action, stack.object_arn(stack.key(key)), context)
    assert got == expected, f"bucket policy on {action} {key}: {got}"


def test_bucket_policy_refuses_plain_http_and_ignores_keys_outside_the_registry(
    deployed_stack: DeployedStack,
) -> None:
    stack = deployed_stack
    policy = [_bucket_policy(stack)]
    arn = stack.object_arn(stack.key("iris/aliases.json"))
    insecure = decide(policy, "s3:GetObject", arn, {"aws:SecureTransport": "false"})
    assert insecure == "deny", "a GET over plain HTTP is not refused"
    secure = decide(policy, "s3:GetObject", arn, {"aws:SecureTransport": "true"})
    assert secure == "implicit-deny", "a GET over TLS is refused by the bucket policy"
    if stack.root:
        outside = stack.object_arn("elsewhere/iris/versions/1.0.0.json")
        context = {"aws:SecureTransport": "true", "s3:ObjectCreationOperation": "true"}
        got = decide(policy, "s3:PutObject", outside, context)
        assert got == "implicit-deny", "the write-once rule reaches outside the registry prefix"


# --- the roles, under moto's IAM enforcement --------------------------------------------------

Op = Literal["get", "put", "delete", "list", "create-multipart", "abort"]

MATRIX: list[tuple[str, Op, str, bool]] = [
    # trainer: reads everything, writes blobs and versions only
    ("trainer", "get", "acl/aliases.json", True),
    ("trainer", "get", METRICS, True),
    ("trainer", "get", "acl/promoter/state.json", True),
    ("trainer", "list", "acl/", True),
    ("trainer", "put", NEW_BLOB, True),
    ("trainer", "put", "acl/versions/2.0.0.json", True),
    ("trainer", "create-multipart", NEW_BLOB, True),
    ("trainer", "abort", NEW_BLOB, True),
    ("trainer", "put", "acl/aliases.json", False),
    ("trainer", "put", "acl/history/000000000002.json", False),
    ("trainer", "put", NEW_METRICS, False),
    ("trainer", "put", "acl/promoter/state.json", False),
    ("trainer", "put", "acl/metrics/blobs/sha256/00", False),  # '*' spilling across '/'
    ("trainer", "put", "acl/history/versions/9.9.9.json", False),
    ("trainer", "put", "acl/promoter/blobs/x", False),
    ("trainer", "put", "acl/signatures/1.0.0/" + "cd" * 32 + ".sig", True),
    ("trainer", "put", "acl/approvals/1.0.0/promote/" + "cd" * 32 + ".sig", True),
    ("trainer", "put", "trust.json", False),
    ("trainer", "put", "acl/history/x/signatures/y", False),  # '*' spilling across '/'
    ("trainer", "delete", BLOB, False),
    ("trainer", "delete", "acl/versions/1.0.0.json", False),
    # server: reads aliases, versions, blobs and metrics (to confirm its own writes); writes
    # metrics only
    ("server", "get", "acl/aliases.json", True),
    ("server", "get", METRICS, True),
    ("server", "get", "acl/versions/1.0.0.json", True),
    ("server", "get", BLOB, True),
    ("server", "list", "acl/", True),
    ("server", "put", NEW_METRICS, True),
    ("server", "get", "trust.json", True),
    ("server", "get", "acl/signatures/1.0.0/" + "cd" * 32 + ".sig", True),
    ("server", "get", "acl/approvals/1.0.0/promote/" + "cd" * 32 + ".sig", True),
    ("server", "put", "acl/signatures/1.0.0/" + "cd" * 32 + ".sig", False),
    ("server", "get", "acl/history/000000000001.json", False),
    ("server", "get", "acl/promoter/policy.json", False),
    ("server", "put", NEW_BLOB, False),
    ("server", "put", "acl/versions/2.0.0.json", False),
    ("server", "put", "acl/aliases.json", False),
    ("server", "put", "acl/history/000000000002.json", False),
    ("server", "create-multipart", NEW_BLOB, False),
    ("server", "put", "acl/versions/metrics/1.json", False),  # '*' spilling across '/'
    ("server", "put", "acl/blobs/sha256/metrics/x", False),
    ("server", "put", "acl/history/metrics/x.json", False),
    ("server", "abort", NEW_BLOB, False),
    ("server", "delete", METRICS, False),
    # promoter: reads everything, writes aliases, history and its own state only
    ("promoter", "get", METRICS, True),
    ("promoter", "get", "acl/history/000000000001.json", True),
    ("promoter", "get", "acl/versions/1.0.0.json", True),
    ("promoter", "list", "acl/metrics/", True),
    ("promoter", "put", "acl/aliases.json", True),
    ("promoter", "put", "acl/history/000000000002.json", True),
    ("promoter", "put", "acl/promoter/state.json", True),
    ("promoter", "put", "acl/promoter/decisions/20260101T000000Z.json", True),
    ("promoter", "put", "acl/report.html", True),
    ("promoter", "put", "acl/versions/report.html", False),
    ("promoter", "put", "acl/metrics/1.0.0/20260101T000000Z/report.html", False),
    ("promoter", "put", "acl/blobs/sha256/report.html", False),
    ("server", "put", "acl/report.html", False),
    ("promoter", "put", NEW_BLOB, False),
    ("promoter", "put", "acl/versions/2.0.0.json", False),
    ("promoter", "put", NEW_METRICS, False),
    ("promoter", "create-multipart", NEW_BLOB, False),
    ("promoter", "put", "acl/versions/aliases.json", False),  # '*' spilling across '/'
    ("promoter", "put", "acl/metrics/1.0.0/history/x.json", False),
    ("promoter", "put", "acl/blobs/promoter/x", False),
    ("promoter", "abort", NEW_BLOB, False),
    ("promoter", "delete", "acl/aliases.json", False),
    ("promoter", "delete", "acl/history/000000000001.json", False),
    # operator: reads everything; deletes blobs and aborts their uploads (gc --yes); nothing else
    ("operator", "get", "acl/versions/1.0.0.json", True),
    ("operator", "get", "acl/history/000000000001.json", True),
    ("operator", "get", "acl/aliases.json", True),
    ("operator", "list", "acl/", True),
    ("operator", "delete", NEW_BLOB, True),
    ("operator", "abort", NEW_BLOB, True),
    ("operator", "delete", "acl/versions/1.0.0.json", False),
    ("operator", "delete", "acl/history/000000000001.json", False),
    ("operator", "delete", "acl/aliases.json", False),
    ("operator", "delete", METRICS, False),
    ("operator", "delete", "acl/promoter/state.json", False),
    ("operator", "delete", "acl/metrics/1.0.0/blobs/x", False),  # '*' spilling across '/'
    ("operator", "delete", "acl/versions/blobs/x", False),
    ("operator", "put", NEW_BLOB, False),
    ("operator", "put", "acl/versions/2.0.0.json", False),
    ("operator", "put", "acl/aliases.json", False),
    ("operator", "put", "acl/history/000000000002.json", False),
    ("operator", "put", NEW_METRICS, False),
    ("operator", "create-multipart", NEW_BLOB, False),
]

# A denied call fails before S3 looks at the key; one that passes authorization may still
# find nothing (an upload id that is not there), which still proves the permission.
_PASSED_AUTHORIZATION = {"NoSuchKey", "NoSuchUpload", "404"}


def _call(client: Any, bucket: str, op: Op, key: str) -> bool:
    """Run ``op`` on ``key``; True when S3 authorized it, False on AccessDenied."""
    try:
        if op == "get":
            client.get_object(Bucket=bucket, Key=key)
        elif op == "put":
            client.put_object(Bucket=bucket, Key=key, Body=b"{}")
        elif op == "delete":
            client.delete_object(Bucket=bucket, Key=key)
        elif op == "list":
            client.list_objects_v2(Bucket=bucket, Prefix=key)
        elif op == "create-multipart":
            upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x")
            client.list_parts(Bucket=bucket, Key=key, UploadId=upload)
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        elif op == "abort":
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId="no-such-upload")
        else:  # pragma: no cover - the matrix names only the ops above
            raise AssertionError(op)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "AccessDenied":
            return False
        if code in _PASSED_AUTHORIZATION:
            return True
        raise
    return True


_IAM_ACTIONS: dict[Op, list[str]] = {
    "get": ["s3:GetObject"],
    "put": ["s3:PutObject"],
    "delete": ["s3:DeleteObject"],
    "list": ["s3:ListBucket"],
    "create-multipart": ["s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
    "abort": ["s3:AbortMultipartUpload"],
}


def _documented_answer(stack: DeployedStack, role: str, op: Op, key: str) -> bool:
    documents = stack.policies[role]
    for action in _IAM_ACTIONS[op]:
        if op == "list":
            resource, context = f"arn:aws:s3:::{stack.bucket}", {"s3:prefix": key}
        else:
            resource, context = stack.object_arn(key), {}
        if decide(documents, action, resource, context) != "allow":
            return False
    return True


@pytest.mark.parametrize(
    ("role", "op", "key", "allowed"),
    MATRIX,
    ids=[f"{r}-{o}-{k}-{'allowed' if a else 'refused'}" for r, o, k, a in MATRIX],
)
def test_role_access_matrix(
    iam_enforced: DeployedStack, role: str, op: Op, key: str, allowed: bool
) -> None:
    stack = iam_enforced
    full = stack.key(key)
    got = _call(stack.credentials[role].client(), stack.bucket, op, full)
    assert got is allowed, (
        f"{role} was {'allowed' if got else 'refused'} {op} {full} under moto's IAM enforcement"
    )
    modelled = _documented_answer(stack, role, op, full)
    assert modelled is allowed, (
        f"IAM's documented evaluation {'allows' if modelled else 'refuses'} {role} {op} {full}"
    )


def test_nobody_can_delete_or_write_outside_the_registry(iam_enforced: DeployedStack) -> None:
    stack = iam_enforced
    for role in ROLES:
        client = stack.credentials[role].client()
        for key in SEEDED:
            if role == "operator" and key == BLOB:
                continue  # gc's job; the matrix checks it on a blob nobody else reads
            assert not _call(client, stack.bucket, "delete", stack.key(key)), (
                f"{role} may delete {stack.key(key)}"
            )
        if stack.root:
            outside = "elsewhere/acl/blobs/sha256/" + "ef" * 32
            assert not _call(client, stack.bucket, "put", outside), f"{role} wrote {outside}"
            assert not _call(client, stack.bucket, "get", "elsewhere/x"), f"{role} read outside"
            assert not _call(client, stack.bucket, "delete", outside), f"{role} deleted outside"
    for role in ROLES:
        documents = stack.policies[role]
        grants = [
            (a, s["Resource"])
            for d in documents
            for s in _as_list(d["Statement"])
            if s["Effect"] == "Allow"
            for a in _as_list(s["Action"])
        ]
        granted = {a for a, _ in grants}
        allowed_deletes = {"s3:DeleteObject"} if role == "operator" else set()
        assert not {a for a in granted if "Delete" in a or a.endswith("*")} - allowed_deletes, (
            f"{role} is granted {sorted(granted)}"
        )
        # gc deletes blobs, and removes the condemnation record it wrote before deleting
        # them (docs/design.md, "Retention"): nothing else.
        deletable = {
            stack.object_arn(stack.key("*/blobs/*")),
            stack.object_arn(stack.key("*/gc/*")),
        }
        for action, resources in grants:
            if "Delete" in action:
                assert set(_as_list(resources)) <= deletable, (
                    f"{role} may {action} {resources}, not only blobs and gc's own records"
                )


def test_listing_is_confined_to_the_registry_prefix(deployed_stack: DeployedStack) -> None:
    # moto ignores the s3:prefix condition, so this is the documented evaluation only.
    stack = deployed_stack
    bucket_arn = f"arn:aws:s3:::{stack.bucket}"
    if not stack.root:
        # Without a prefix the registry is the whole bucket: listing it anywhere is the job.
        for role in ROLES:
            for context in ({"s3:prefix": "acl/"}, {}):
                got = decide(stack.policies[role], "s3:ListBucket", bucket_arn, context)
                assert got == "allow", f"{role} may not list the registry bucket: {got}"
        return
    for role in ROLES:
        documents = stack.policies[role]
        inside = decide(documents, "s3:ListBucket", bucket_arn, {"s3:prefix": stack.key("acl/")})
        assert inside == "allow", f"{role} may not list its registry: {inside}"
        for context in ({"s3:prefix": "elsewhere/"}, {}):
            got = decide(documents, "s3:ListBucket", bucket_arn, context)
            assert got == "implicit-deny", f"{role} may list with {context or 'no prefix'}"


def test_sdk_push_alias_and_read_under_the_roles(
    fresh_stack: DeployedStack, tmp_path: Path
) -> None:
    stack = fresh_stack

    def registry(role: str) -> Registry:
        return Registry(
            stack.registry_uri,
            client=stack.credentials[role].client(),
            cache_dir=tmp_path / role,
            user=role,
        )

    trainer, server, promoter = registry("trainer"), registry("server"), registry("promoter")
    ci = new_key_pair(tmp_path / "keys", "ci")
    trainer.push("fraud", {"weights": 1}, version="1.0.0", sign_key=ci.private_path)
    trainer.push("fraud", {"weights": 2}, version="1.1.0", sign_key=ci.private_path)
    # The server pins a policy that requires signatures: it reads bundles under its role.
    server = Registry(
        stack.registry_uri,
        client=stack.credentials["server"].client(),
        cache_dir=tmp_path / "server",
        user="server",
        trust_policy=TrustPolicy(
            keys=[TrustedKey(name="ci", public_key=ci.public_path.read_text())],
            require_signature=True,  # type: ignore[arg-type]
        ),
    )
    promoter.set_active("fraud", "1.0.0", reason="first release")
    promoter.start_canary("fraud", "1.1.0", 0.05, reason="canary")
    aliases = server.aliases("fraud")
    assert (aliases.active, aliases.canary) == ("1.0.0", "1.1.0"), f"server reads {aliases}"

    # The serving client as the server role: load both versions, poll, flush metrics.
    serving = ModelServer(server, "fraud", server_id="web-1")
    assert serving.refresh(), "the serving client did not load the aliases' versions"
    assert not serving.refresh(), "an unchanged aliases object was treated as a change"
    serving.record("1.1.0", 12.5)
    serving.record("1.0.0", 9.0, error=True)
    assert serving.flush() == 0, "metric summaries are still pending: a flush was refused"
    listed = promoter.store.list("fraud/metrics/")
    assert len(list(listed)) == 2, "the promoter does not see one object per flushed version"

    refusals = [
        ("server push", lambda: server.push("fraud", {"weights": 3}, version="1.2.0")),
        ("trainer alias flip", lambda: trainer.set_active("fraud", "1.1.0")),
        ("promoter push", lambda: promoter.push("fraud", {"weights": 4}, version="1.3.0")),
    ]
    for what, attempt in refusals:
        with pytest.raises(ModelshelfError) as excinfo:
            attempt()
        assert _denied(excinfo.value), f"{what} failed otherwise than denied: {excinfo.value!r}"
    assert trainer.versions("fraud") == ["1.0.0", "1.1.0"], "a refused push left a version"
    assert promoter.aliases("fraud").active == "1.0.0", "a refused alias change landed"


def test_the_operator_runs_gc_and_nothing_else(fresh_stack: DeployedStack, tmp_path: Path) -> None:
    stack = fresh_stack

    def registry(role: str) -> Registry:
        return Registry(
            stack.registry_uri,
            client=stack.credentials[role].client(),
            cache_dir=tmp_path / role,
            user=role,
        )

    trainer, operator = registry("trainer"), registry("operator")
    for i in range(3):
        trainer.push("fraud", {"weights": i}, version=f"1.{i}.0")
    plan = operator.gc("fraud", keep_last=1, dry_run=False)
    assert plan.expired_versions == ["1.0.0", "1.1.0"] and len(plan.delete_blobs) == 2, plan
    s3 = stack.credentials["trainer"].client()
    left = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix=stack.key("fraud/blobs/")).get(
            "Contents", []
        )
    ]
    assert len(left) == 1, f"gc under the operator role left {left}"
    refusals = [
        ("operator push", lambda: operator.push("fraud", {"weights": 9}, version="2.0.0")),
        ("operator alias flip", lambda: operator.set_active("fraud", "1.2.0")),
    ]
    for what, attempt in refusals:
        with pytest.raises(ModelshelfError) as excinfo:
            attempt()
        assert _denied(excinfo.value), f"{what} failed otherwise than denied: {excinfo.value!r}"
    assert trainer.versions("fraud") == ["1.0.0", "1.1.0", "1.2.0"], "manifests were deleted"


@pytest.mark.parametrize(
    ("tag", "key", "expected"),
    [
        ("web-1", "iris/metrics/1.0.0/20260101T000000Z/web-1-00000007.json", "allow"),
        ("web-1", "iris/metrics/1.0.0/20260101T000000Z/web-2-00000007.json", "implicit-deny"),
        ("web-1", "iris/metrics/1.0.0/20260101T000000Z/web-1-x-00000007.json", "implicit-deny"),
        ("web-1", "iris/metrics/1.0.0/20260101T000000Z/xweb-1-00000007.json", "implicit-deny"),
        (None, "iris/metrics/1.0.0/20260101T000000Z/web-1-00000007.json", "implicit-deny"),
    ],
)
def test_bound_server_identity_writes_only_its_own_metric_keys(
    deployed_stack: DeployedStack, tag: str | None, key: str, expected: str
) -> None:
    # moto does not substitute policy variables: this is IAM's documented evaluation only.
    variant = deployed_stack.variant
    bound = Variant(
        f"{variant.id}-bound",
        prefix=variant.prefix,
        models_to_watch="",
        metrics_expiry_models="",
        bind_server_identity="true",
    )
    stack = deploy(bound, f"bound-{uuid.uuid4().hex[:8]}")
    context = {} if tag is None else {"aws:PrincipalTag/modelshelf-server-id": tag}
    got = decide(
        stack.policies["server"], "s3:PutObject", stack.object_arn(stack.key(key)), context
    )
    assert got == expected, f"a server tagged {tag} writing {key}: {got}"
    unbound = decide(
        deployed_stack.policies["server"],
        "s3:PutObject",
        deployed_stack.object_arn(deployed_stack.key(key)),
        context,
    )
    assert unbound == "allow", "without BindServerIdentity any server id may be written"


def _denied(exc: BaseException | None) -> bool:
    # An alias change reports a refused history claim as CommitStateUnknownError for now,
    # with the AccessDeniedError as its cause.
    while exc is not None:
        if isinstance(exc, AccessDeniedError):
            return True
        exc = exc.__cause__
    return False


class _LambdaContext:
    """The attributes of Lambda's context object a handler may read."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/modelshelf/test/promoter"
        self.log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def test_handler_runs_on_the_scheduled_event_as_the_execution_role(
    fresh_stack: DeployedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = pytest.importorskip("modelshelf_promoter.handler")
    stack = fresh_stack

    trainer = Registry(
        stack.registry_uri, client=stack.credentials["trainer"].client(), cache_dir=tmp_path / "t"
    )
    operator = Registry(
        stack.registry_uri, client=stack.credentials["promoter"].client(), cache_dir=tmp_path / "p"
    )
    for version in ("1.0.0", "1.1.0"):
        trainer.push("iris", {"weights": version}, version=version)
    trainer.push("churn", {"weights": 0}, version="1.0.0")
    operator.set_active("iris", "1.0.0")
    operator.start_canary("iris", "1.1.0", 0.05)
    operator.set_active("churn", "1.0.0")

    function = stack.function
    for name, value in {
        **function["Environment"]["Variables"],
        **stack.credentials["promoter"].env(),
        "AWS_LAMBDA_FUNCTION_NAME": function["FunctionName"],
        "MODELSHELF_CACHE": str(tmp_path / "lambda-cache"),
    }.items():
        monkeypatch.setenv(name, value)

    result = handler.lambda_handler(
        scheduled_payload(stack), _LambdaContext(function["FunctionName"])
    )
    text = json.dumps(result)  # the summary must be JSON, as Lambda returns it
    assert result.get("errors", 0) == 0, f"the promoter reported errors: {text}"
    assert "iris" in text, f"the summary does not mention the canary it judged: {text}"
    assert "AccessDenied" not in text and "Access Denied" not in text, (
        f"the promoter hit a permission it lacks: {text}"
    )
    # What the run wrote, it wrote as the execution role: its decisions and cursor exist.
    promoter_s3 = stack.credentials["promoter"].client()
    written = [stack.key(m["decision_key"]) for m in result["models"] if m.get("decision_key")]
    written.append(stack.key("iris/promoter/state.json"))
    for key in written:
        promoter_s3.head_object(Bucket=stack.bucket, Key=key)  # raises if it is missing
    aliases = operator.aliases("iris")
    # No metrics at all: too few samples, so the canary must neither advance nor be promoted.
    assert (aliases.active, aliases.canary, aliases.ratio) == ("1.0.0", "1.1.0", 0.05), (
        f"a canary without any metrics moved: {aliases}"
    )


# --- the Lambda package -----------------------------------------------------------------------

_LAMBDA_MARKERS = {
    "python_version": build.PYTHON_VERSION,
    "python_full_version": build.PYTHON_VERSION + ".0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _bundled_distributions(requirements: list[str]) -> set[str]:
    """The distributions pip installs for ``requirements`` (as installed here)."""
    pending = [Requirement(r) for r in requirements]
    found: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = _normalize(requirement.name)
        if name in found:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(_LAMBDA_MARKERS):
            continue
        found.add(name)
        pending += [Requirement(r) for r in metadata.requires(requirement.name) or []]
    return found


def test_lambda_requirements_leave_out_cli_and_model_loading() -> None:
    names = {
        _normalize(Requirement(r).name) for r in build.lambda_requirements(REPO / "pyproject.toml")
    }
    assert {"pydantic", "packaging", "ddsketch", "boto3"} <= names, f"bundled: {sorted(names)}"
    assert not names & {"click", "rich", "joblib"}, f"CLI-only packages bundled: {sorted(names)}"
    slim = build.lambda_requirements(REPO / "pyproject.toml", bundle_boto3=False)
    assert "boto3" not in {_normalize(Requirement(r).name) for r in slim}, "--no-boto3 kept boto3"


def test_every_module_the_handler_loads_is_in_the_zip() -> None:
    handler_exists = (REPO / "promoter" / "modelshelf_promoter" / "handler.py").is_file()
    entries = [build.HANDLER_MODULE] if handler_exists else list(build.FIRST_PARTY)
    scan = build.scan_imports(entries)
    assert "modelshelf_promoter" in scan.modules, f"the scan saw {scan.modules}"
    if handler_exists:
        assert build.HANDLER_MODULE in scan.modules, "the handler module was not scanned"
    bundled = _bundled_distributions(build.lambda_requirements(REPO / "pyproject.toml"))
    providers = metadata.packages_distributions()
    missing = {
        module: where
        for module, where in scan.eager.items()
        if not {_normalize(d) for d in providers.get(module, [])} & bundled
    }
    assert not missing, (
        f"the handler imports these at load time but the Lambda zip lacks them: {missing}"
    )
