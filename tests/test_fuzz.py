"""Contract fuzzing: schemathesis drives every operation of /openapi.json with a valid token,
with data that fits the schema and data that does not.

Zero server errors, zero responses outside their documented schema, zero undocumented codes."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

EXAMPLES_PER_OPERATION = 60
# Hypothesis draws the examples from this seed, so a run repeats the last one on the same
# code; a failure is a change, never a new roll of the dice. Change it to explore others.
SEED = 20240611
# Operations that only a secret opens: random passwords and refresh tokens are refused, rightly.
NEED_A_SECRET = {
    "POST /api/auth/signin",
    "POST /api/auth/password",
    "POST /api/auth/refresh",
    "DELETE /api/users/{user_id}",
}
SIGNOUT = "POST /api/auth/signout"  # ends the fuzzer's session: fuzzed last
# Invalid data may also be refused for its size (413): that is a rejection too.
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]


def fuzzing_config(token):
    """The token goes in as the bearerAuth credentials, so schemathesis knows it is valid
    (and also checks that requests without it are refused)."""
    return schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"bearerAuth": {"bearer": token}}},
            "checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}},
        }
    )


@pytest.fixture
def fuzzer(auth):
    user = auth.signup("fuzzer@example.com")
    auth.create_task(user)
    return user


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_its_contract(app, fuzzer, mode):
    config = fuzzing_config(fuzzer.token)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)
    statuses = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(operations, key=lambda operation: operation.label == SIGNOUT):
        # Pin the token's user, or nearly every case would stop at 403.
        pinned = {"user_id": fuzzer.id} if "{user_id}" in operation.path else None
        strategy = operation.as_strategy(mode, path_parameters=pinned)

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def keeps_contract(case):
            # Rules JSON Schema cannot say (72 bytes, trimmed titles, no NUL) reject some
            # schema-valid data by design, so "valid data is accepted" is not checked.
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            statuses.setdefault(case.operation.label, []).append(response.status_code)

        try:
            keeps_contract()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise  # an operation without inputs has nothing to make invalid: fine
    print(f"{mode}: {sum(map(len, statuses.values()))} cases over {len(statuses)} operations")
    if mode is GenerationMode.POSITIVE:  # the token worked: no operation was only refused
        for label, codes in statuses.items():
            if label not in NEED_A_SECRET:
                assert set(codes) - {401, 403}, (label, codes)
