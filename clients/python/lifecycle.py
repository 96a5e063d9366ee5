#!/usr/bin/env python3
"""An independent client of the caseworker API, written against the proto only.

Generates the Python stubs from ../../proto at run time (grpc_tools.protoc, into
a temporary directory), connects to the address given as argv[1] (host:port,
plaintext), runs one PPT case from registration to card delivery, reads it
back, and checks a refused request. Prints

    python client: N passed, 0 failed

and exits non-zero if any check failed.

    python3 -m venv target/pyenv
    target/pyenv/bin/pip install -r clients/python/requirements.txt
    target/pyenv/bin/python clients/python/lifecycle.py 127.0.0.1:50051
"""

import importlib
import os
import importlib.resources
import pathlib
import random
import sys
import tempfile
import uuid

import grpc
from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"
# Credentials: a bearer token of a supervisor principal, from $REGISTRY_TOKEN.
METADATA = (("authorization", "Bearer " + os.environ.get("REGISTRY_TOKEN", "")),)
TIMEOUT_S = 20


def generate_stubs(out_dir):
    """Compiles every .proto under PROTO_ROOT into out_dir; returns the modules."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")
    sys.path.insert(0, str(out_dir))
    pb = importlib.import_module("regularization.v1.caseworker_pb2")
    rpc = importlib.import_module("regularization.v1.caseworker_pb2_grpc")
    return pb, rpc


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, condition, detail=""):
        if condition:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAILED: {name} {detail}", file=sys.stderr)
        return condition

    def equal(self, name, actual, expected):
        return self.check(name, actual == expected, f"(expected {expected!r}, got {actual!r})")


def main(address):
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="caseworker-stubs-") as out_dir:
        pb, rpc = generate_stubs(out_dir)
        channel = grpc.insecure_channel(address)
        stub = rpc.CaseworkerStub(channel)
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
            reflect(channel, checks)
            run(pb, stub, checks)
        except grpc.RpcError as e:
            checks.check("unexpected RPC error", False, f"{e.code()}: {e.details()}")
        except Exception as e:  # unreachable server, broken stub or message: a failure too
            checks.check("unexpected error", False, repr(e))
        finally:
            channel.close()
    print(f"python client: {checks.passed} passed, {checks.failed} failed")
    return 0 if checks.failed == 0 and checks.passed > 0 else 1


def reflect(channel, checks):
    """Server reflection as the standard Python client speaks it (v1alpha)."""
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    class Authenticated(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
        def _with_token(self, details):
            return details._replace(metadata=list(details.metadata or []) + list(METADATA))

        def intercept_unary_unary(self, continuation, details, request):
            return continuation(self._with_token(details), request)

        def intercept_stream_stream(self, continuation, details, requests):
            return continuation(self._with_token(details), requests)

    database = ProtoReflectionDescriptorDatabase(grpc.intercept_channel(channel, Authenticated()))
    services = list(database.get_services())
    checks.check("reflection (v1alpha) lists Caseworker", "regularization.v1.Caseworker" in services, services)


def run(pb, stub, checks):
    cedula = "V%08d" % random.randint(10_000_000, 99_999_999)
    state = {"case_id": "", "version": 0}

    def header(on):
        return pb.CommandHeader(
            request_id=str(uuid.uuid4()),
            case_id=state["case_id"],
            expected_version=state["version"],
            on=on,
        )

    def step(name, call, request, stage, status=None):
        result = call(request, metadata=METADATA, timeout=TIMEOUT_S)
        checks.equal(f"{name} version", result.version, state["version"] + 1)
        checks.equal(f"{name} stage", result.stage, stage)
        if status is not None:
            checks.equal(f"{name} status", result.status, status)
        checks.check(f"{name} not deduplicated", not result.deduplicated)
        state["case_id"], state["version"] = result.case_id, result.version
        return result

    person = pb.PersonalData(
        given_names="LUISA FERNANDA",
        family_names="PYTHON CLIENTE",
        birth_date="1989-08-08",
        documents=[pb.IdentityDocument(type=pb.DOCUMENT_TYPE_VENEZUELAN_CEDULA, number=cedula)],
    )
    registration = pb.RegisterPersonRequest(
        header=header("2022-03-01"),
        person=person,
        sex=pb.SEX_F,
        nationality="VEN",
        department="08",
        municipality="08001",
    )
    r = step("RegisterPerson", stub.RegisterPerson, registration, "REGISTERED", pb.PERSON_STATUS_IRREGULAR)
    checks.check("RegisterPerson case id", r.case_id.startswith("C-"), r.case_id)
    checks.equal("RegisterPerson event types", list(r.event_types), ["PersonRegistered"])

    # A retry of the same request returns the same result, deduplicated.
    retry = stub.RegisterPerson(registration, metadata=METADATA, timeout=TIMEOUT_S)
    checks.check("RegisterPerson retry deduplicated", retry.deduplicated)
    checks.equal("RegisterPerson retry same case", retry.case_id, r.case_id)
    checks.equal("RegisterPerson retry same seq", retry.first_seq, r.first_seq)

    step(
        "PreRegister",
        stub.PreRegister,
        pb.PreRegisterRequest(
            header=header("2022-03-02"),
            channel="ETPV",
            basis=pb.ELIGIBILITY_BASIS_IRREGULAR_ON_2021_01_31,
        ),
        "PRE_REGISTERED",
        pb.PERSON_STATUS_IN_PROCESS,
    )
    step(
        "ScheduleBiometrics",
        stub.ScheduleBiometrics,
        pb.ScheduleBiometricsRequest(header=header("2022-03-03"), appointment_on="2022-03-15", site="BAQ-01"),
        "BIOMETRICS_SCHEDULED",
    )
    step(
        "RecordBiometricCapture",
        stub.RecordBiometricCapture,
        pb.RecordBiometricCaptureRequest(
            header=header("2022-03-15"), site="BAQ-01", operator="OP-PY", biometric_ref=bytes(range(1, 33))
        ),
        "UNDER_REVIEW",
        pb.PERSON_STATUS_IN_PROCESS,
    )
    step("Approve", stub.Approve, pb.SimpleStepRequest(header=header("2022-04-01")), "APPROVED")
    step(
        "IssuePermit",
        stub.IssuePermit,
        pb.IssuePermitRequest(header=header("2022-04-02"), permit_number="PPT-PY-000001"),
        "PERMIT_ISSUED",
        pb.PERSON_STATUS_REGULAR_PPT,
    )
    step("PrintCard", stub.PrintCard, pb.SimpleStepRequest(header=header("2022-04-10")), "CARD_PRINTED")
    step(
        "DeliverCard",
        stub.DeliverCard,
        pb.SimpleStepRequest(header=header("2022-04-20")),
        "CARD_DELIVERED",
        pb.PERSON_STATUS_REGULAR_PPT,
    )

    case = stub.GetCase(
        pb.GetCaseRequest(case_id=state["case_id"], purpose="PYTHON_CLIENT_TEST"),
        metadata=METADATA,
        timeout=TIMEOUT_S,
    )
    checks.equal("GetCase version", case.version, 8)
    checks.equal("GetCase stage", case.stage, "CARD_DELIVERED")
    checks.equal("GetCase status", case.status, pb.PERSON_STATUS_REGULAR_PPT)
    checks.equal("GetCase given names", case.person.given_names, "LUISA FERNANDA")
    checks.equal("GetCase family names", case.person.family_names, "PYTHON CLIENTE")
    checks.equal("GetCase document", [d.number for d in case.person.documents], [cedula])
    checks.equal("GetCase permit type", case.permit.type, pb.PERMIT_TYPE_PPT)
    checks.equal("GetCase permit number", case.permit.permit_number, "PPTPY000001")
    checks.equal("GetCase card state", case.permit.card_state, "DELIVERED")
    checks.equal("GetCase municipality", case.municipality, "08001")
    checks.equal("GetCase history length", len(case.history), 8)
    checks.check(
        "GetCase history seqs increase",
        all(a.seq < b.seq for a, b in zip(case.history, case.history[1:])),
    )

    found = stub.FindCasesByDocument(
        pb.FindCasesByDocumentRequest(
            document=pb.IdentityDocument(type=pb.DOCUMENT_TYPE_VENEZUELAN_CEDULA, number=cedula.lower()),
            purpose="PYTHON_CLIENT_TEST",
        ),
        metadata=METADATA,
        timeout=TIMEOUT_S,
    )
    checks.equal("FindCasesByDocument", list(found.case_ids), [state["case_id"]])

    # Refusals: a malformed birth date, a step not allowed, no credentials.
    bad = pb.RegisterPersonRequest()
    bad.CopyFrom(registration)
    bad.header.request_id = str(uuid.uuid4())
    bad.person.birth_date = "1989-13-08"
    expect_error(checks, "bad birth date", grpc.StatusCode.INVALID_ARGUMENT, "person.birth_date",
                 lambda: stub.RegisterPerson(bad, metadata=METADATA, timeout=TIMEOUT_S))
    expect_error(checks, "print after delivery", grpc.StatusCode.FAILED_PRECONDITION, "CARD_DELIVERED",
                 lambda: stub.PrintCard(pb.SimpleStepRequest(header=header("2022-04-21")),
                                        metadata=METADATA, timeout=TIMEOUT_S))
    expect_error(checks, "no credentials", grpc.StatusCode.UNAUTHENTICATED, "credentials required",
                 lambda: stub.GetCase(pb.GetCaseRequest(case_id=state["case_id"], purpose="X"),
                                      timeout=TIMEOUT_S))
    after = stub.GetCase(
        pb.GetCaseRequest(case_id=state["case_id"], purpose="PYTHON_CLIENT_TEST"),
        metadata=METADATA,
        timeout=TIMEOUT_S,
    )
    checks.equal("refusals recorded nothing", after.version, 8)


def expect_error(checks, name, code, mention, call):
    try:
        call()
    except grpc.RpcError as e:
        checks.equal(f"{name} code", e.code(), code)
        checks.check(f"{name} message names {mention}", mention in (e.details() or ""), e.details())
        return
    checks.check(f"{name} refused", False, "the call succeeded")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: lifecycle.py HOST:PORT", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
