"""Drives a sample of catalogue cells through the official Azure SDK, unchanged.

Run by tests/integration/sdk.rs with the python of a virtualenv holding one SDK version:

    python sdk_sample.py API_URL TOKEN MOCK_URL CASES_PATH LOG_PATH

CASES_PATH holds a JSON list of cases: {"source", "name", "properties" (the linker's REST
properties), "keys" (the configuration keys the matrix documents for the cell)}. For each case
the SDK builds its model from the properties, creates the linker, reads it (no secret comes
back), lists its configurations (exactly the documented keys, also present in the source), and
deletes it; the mock's state after the delete must equal its state before the create. Every HTTP
exchange is logged to LOG_PATH as in sdk_e2e.py. Exits 0 only if every case passed.
"""

import json
import sys
import traceback

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.servicelinker import ServiceLinkerManagementClient, __version__ as SDK_VERSION, models

from sdk_e2e import AllowPlainHttp, CheckFailed, ExchangeLog, MockAzure, StaticToken, check, step, wait


def comparable(state):
    """The mock's state without a container app's history (revisions), which no delete undoes."""
    kept = {}
    for rid, resource in state.items():
        if "/revisions/" in rid:
            continue
        resource = json.loads(json.dumps(resource))
        props = resource.get("properties")
        if isinstance(props, dict):
            props.pop("latestRevisionName", None)
            props.pop("latestReadyRevisionName", None)
        kept[rid] = resource
    return kept


def written_keys(mock, source):
    """The configuration keys the source holds."""
    state = mock.state()
    if "/microsoft.web/sites/" in source.lower():
        settings = state.get(f"{source}/config/appsettings".lower())
        return set(settings["properties"]) if settings else set()
    app = state[source.lower()]
    return {e["name"] for e in app["properties"]["template"]["containers"][0].get("env", [])}


def run_case(client, mock, case):
    source, name, keys = case["source"], case["name"], set(case["keys"])
    what = f"{name} ({case['label']})"
    before = comparable(mock.state())
    # (The SDK's deserializer consumes discriminators from the dict it is given: a copy.)
    linker = models.LinkerResource.deserialize(json.loads(json.dumps({"properties": case["properties"]})))
    check(linker.target_service is not None and linker.auth_info is not None,
          f"{what}: the SDK's model dropped the target or the auth info")
    created = wait(client.linker.begin_create_or_update(source, name, linker), f"{what}: create")
    check(created.provisioning_state == "Succeeded", f"{what}: create: {created.provisioning_state}")

    got = client.linker.get(source, name)
    check(got.auth_info.auth_type == case["properties"]["authInfo"]["authType"], f"{what}: get: {got.auth_info}")
    # A secret never comes back (a Key Vault secret URI is not one: ARM returns it).
    secret_info = getattr(got.auth_info, "secret_info", None)
    if secret_info is not None and getattr(secret_info, "secret_type", None) != "keyVaultSecretUri":
        check(getattr(secret_info, "value", None) is None, f"{what}: get returned a secret")
    check(getattr(got.auth_info, "secret", None) is None, f"{what}: get returned a secret")

    listed = {c.name for c in (client.linker.list_configurations(source, name).configurations or [])}
    check(listed == keys, f"{what}: list_configurations {sorted(listed)}, the matrix documents {sorted(keys)}")
    held = written_keys(mock, source)
    check(keys <= held, f"{what}: the source lacks {sorted(keys - held)}")

    wait(client.linker.begin_delete(source, name), f"{what}: delete")
    try:
        client.linker.get(source, name)
        check(False, f"{what}: the linker is still there after its delete")
    except ResourceNotFoundError:
        pass
    after = comparable(mock.state())
    left = sorted(rid for rid in set(before) | set(after) if before.get(rid) != after.get(rid))
    check(not left, f"{what}: the delete left {left}")
    step(f"{what}: created, read, {len(keys)} keys listed and written, deleted without a trace")


def main(api_url, token, mock_url, cases_path, log_path):
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)
    mock = MockAzure(mock_url, token)
    client = ServiceLinkerManagementClient(
        StaticToken(token),
        base_url=api_url,
        per_call_policies=[AllowPlainHttp()],
        per_retry_policies=[ExchangeLog(log_path)],
    )
    step(f"azure-mgmt-servicelinker {SDK_VERSION} (api-version {client._config.api_version}), {len(cases)} cases")
    for case in cases:
        run_case(client, mock, case)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(f"usage: {sys.argv[0]} API_URL TOKEN MOCK_URL CASES_PATH LOG_PATH")
    try:
        main(*sys.argv[1:])
    except CheckFailed as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)
    except HttpResponseError as e:
        response = e.response
        where = f"{response.request.method} {response.request.url}" if response is not None else "?"
        print(f"FAIL the server answered an error: {where}: {e.status_code} {e.message}", flush=True)
        traceback.print_exc()
        sys.exit(1)
    except Exception as e:
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        sys.exit(1)
    print("all cases passed", flush=True)
