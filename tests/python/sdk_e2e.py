"""Drives a Tether replica with the official Azure SDK (`azure-mgmt-servicelinker`), unchanged.

Run by tests/integration/sdk.rs with the python of a virtualenv holding one SDK version:

    python sdk_e2e.py API_URL TOKEN MOCK_URL RUN_ID LOG_PATH

It seeds fresh resources in the mock Azure backend (through its ARM API, standard library
only), then creates, reads, lists, validates, patches and deletes one linker with the SDK,
checking the mock's state after each step. Every HTTP exchange the SDK makes is appended to
LOG_PATH as one JSON line (method, url, status, headers, body, text) for the Rust test to
check against the OpenAPI document. Prints one line per step; exits 0 only if every check passed.
"""

import json
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.servicelinker import ServiceLinkerManagementClient, __version__ as SDK_VERSION, models

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
LRO_TIMEOUT_SECS = 60
USER = "sdkuser"
OUTBOUND_IPS = ["20.51.7.1", "20.51.7.2"]


def password_for(run_id):
    """A password with a space, a quote and a backslash. sdk.rs derives the same one: keep in sync."""
    return f"pw {run_id} it's a \\ test"


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


class StaticToken:
    """A TokenCredential that always returns the test's bearer token (no azure-identity)."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)


class AllowPlainHttp(SansIOHTTPPolicy):
    """Lets BearerTokenCredentialPolicy send the token over plain http (the test server has no TLS).

    In the installed azure-core, BearerTokenCredentialPolicy.on_request calls `_enforce_https`,
    which moves an `enforce_https=False` call option into `request.context["enforce_https"]` and
    then refuses non-https URLs unless `request.context.get("enforce_https", True)` is false.
    We set that context key in a per-call policy rather than passing `enforce_https=False` to each
    call: per-call policies run ahead of the authentication policy (the SDK's ARMPipelineClient
    puts them before it, with or without an explicit policy list) on every pipeline run, including
    the poller's status and final GETs and the pager's next-link GETs, which a per-call keyword
    reaches only through generated code forwarding its leftover kwargs.
    """

    def on_request(self, request):
        request.context["enforce_https"] = False


class ExchangeLog(SansIOHTTPPolicy):
    """Appends one JSON line per HTTP exchange (installed per retry, so every attempt is logged)."""

    def __init__(self, path):
        self._path = path

    def on_response(self, request, response):
        http = response.http_response
        text = http.body().decode("utf-8", errors="replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        entry = {
            "method": request.http_request.method,
            "url": request.http_request.url,
            "status": http.status_code,
            "headers": {k.lower(): v for k, v in http.headers.items()},
            "body": body,
            "text": text,
        }
        with open(self._path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


class MockAzure:
    """The mock backend: its ARM API (to seed resources) and its admin state."""

    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def put(self, resource_id, body):
        request = urllib.request.Request(
            f"{self.url}{resource_id}?api-version=2023-12-01",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                check(200 <= response.status < 300, f"seeding {resource_id}: {response.status}")
        except urllib.error.HTTPError as e:
            raise CheckFailed(f"seeding {resource_id}: {e.code} {e.read().decode()}") from e

    def state(self):
        with urllib.request.urlopen(f"{self.url}/admin/state", timeout=30) as response:
            return json.load(response)["resources"]

    def app_settings(self, site_id):
        settings = self.state().get(f"{site_id}/config/appsettings".lower())
        return settings["properties"] if settings else {}

    def firewall_rules(self, server_id):
        prefix = f"{server_id}/firewallRules/".lower()
        return sorted(
            (r["properties"]["startIpAddress"], r["properties"]["endIpAddress"])
            for rid, r in self.state().items()
            if rid.startswith(prefix)
        )


def libpq_quote(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def step(text):
    print(f"ok   {text}", flush=True)


def wait(poller, what):
    result = poller.result(timeout=LRO_TIMEOUT_SECS)
    check(poller.done(), f"{what} did not finish in {LRO_TIMEOUT_SECS}s (status {poller.status()})")
    return result


def main(api_url, token, mock_url, run_id, log_path):
    password = password_for(run_id)
    mock = MockAzure(mock_url, token)

    # 1. Fresh resources, named after the run.
    rg = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-sdk-{run_id}"
    site_id = f"{rg}/providers/Microsoft.Web/sites/web-{run_id}"
    server_name = f"pg-{run_id}"
    server_id = f"{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{server_name}"
    db_name = f"db{run_id}"
    db_id = f"{server_id}/databases/{db_name}"
    mock.put(rg, {"location": "westus"})
    mock.put(site_id, {"location": "westus", "kind": "app", "properties": {"outboundIpAddresses": ",".join(OUTBOUND_IPS)}})
    mock.put(server_id, {"location": "westus", "properties": {"administratorLogin": "pgadmin", "version": "16"}})
    mock.put(db_id, {"properties": {}})
    check(db_id.lower() in mock.state(), "the seeded database is not in the mock")
    check(mock.app_settings(site_id) == {}, "a fresh app has app settings")
    step(f"seeded {rg}")

    # 2. The SDK client, over plain http, logging every exchange.
    client = ServiceLinkerManagementClient(
        StaticToken(token),
        base_url=api_url,
        per_call_policies=[AllowPlainHttp()],
        per_retry_policies=[ExchangeLog(log_path)],
    )
    step(f"azure-mgmt-servicelinker {SDK_VERSION} (api-version {client._config.api_version})")
    linkers = client.linker
    name = "pg"
    host = f"{server_name}.postgres.database.azure.com"

    # 3. Create.
    linker = models.LinkerResource(
        target_service=models.AzureResource(id=db_id),
        auth_info=models.SecretAuthInfo(name=USER, secret_info=models.ValueSecretInfo(value=password)),
        client_type="python",
        v_net_solution=models.VNetSolution(type="firewall"),
    )
    created = wait(linkers.begin_create_or_update(site_id, name, linker), "create")
    check(created.provisioning_state == "Succeeded", f"create: provisioning_state {created.provisioning_state}")
    expected = (
        f"dbname={db_name} host={host} port=5432 sslmode=require user={USER} password={libpq_quote(password)}"
    )
    settings = mock.app_settings(site_id)
    check(
        settings.get("AZURE_POSTGRESQL_CONNECTIONSTRING") == expected,
        f"create: app settings {settings!r}, expected the connection string {expected!r}",
    )
    rules = mock.firewall_rules(server_id)
    check(rules == [(ip, ip) for ip in OUTBOUND_IPS], f"create: firewall rules {rules}")
    step(f"begin_create_or_update: Succeeded, app setting and {len(rules)} firewall rules in place")

    # 4. Read, list, list configurations, validate.
    got = linkers.get(site_id, name)
    check(got.provisioning_state == "Succeeded", f"get: provisioning_state {got.provisioning_state}")
    check(got.client_type == "python", f"get: client_type {got.client_type}")
    check(isinstance(got.auth_info, models.SecretAuthInfo), f"get: auth_info {got.auth_info!r}")
    check(got.auth_info.name == USER, f"get: auth_info.name {got.auth_info.name}")
    check(got.auth_info.secret_info is None or getattr(got.auth_info.secret_info, "value", None) is None,
          "get: the secret value was returned")
    step("get: Succeeded, no secret value")

    listed = list(linkers.list(site_id))
    check([item.name for item in listed] == [name], f"list: {[item.name for item in listed]}")
    step("list: one linker")

    configs = linkers.list_configurations(site_id, name).configurations or []
    pairs = [(c.name, c.value) for c in configs]
    redacted = f"dbname={db_name} host={host} port=5432 sslmode=require user={USER} password=<redacted>"
    check(pairs == [("AZURE_POSTGRESQL_CONNECTIONSTRING", redacted)], f"list_configurations: {pairs}")
    step("list_configurations: the key, password redacted")

    validated = wait(linkers.begin_validate(site_id, name), "validate")
    check(validated is not None, "validate: no result")
    check(validated.is_connection_available is True, f"validate: {validated.as_dict()}")
    step("begin_validate: connection available")

    # 5. Patch the client type: the stored password is kept, now as a JDBC URL.
    updated = wait(linkers.begin_update(site_id, name, models.LinkerPatch(client_type="java")), "update")
    check(updated.provisioning_state == "Succeeded", f"update: provisioning_state {updated.provisioning_state}")
    check(updated.client_type == "java", f"update: client_type {updated.client_type}")
    jdbc = (
        f"jdbc:postgresql://{host}:5432/{db_name}?sslmode=require&user={USER}"
        f"&password={urllib.parse.quote(password, safe='')}"
    )
    settings = mock.app_settings(site_id)
    check(settings.get("AZURE_POSTGRESQL_CONNECTIONSTRING") == jdbc, f"update: app settings {settings!r}, expected {jdbc!r}")
    step("begin_update: Succeeded, JDBC URL in place")

    # 6. Delete: gone from the API and from the backend.
    wait(linkers.begin_delete(site_id, name), "delete")
    try:
        linkers.get(site_id, name)
        check(False, "get after delete: the linker is still there")
    except ResourceNotFoundError:
        pass
    settings = mock.app_settings(site_id)
    check("AZURE_POSTGRESQL_CONNECTIONSTRING" not in settings, f"delete: app settings left {settings!r}")
    rules = mock.firewall_rules(server_id)
    check(rules == [], f"delete: firewall rules left {rules}")
    step("begin_delete: done, get raises ResourceNotFoundError, setting and rules removed")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(f"usage: {sys.argv[0]} API_URL TOKEN MOCK_URL RUN_ID LOG_PATH")
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
    except Exception as e:  # anything else the SDK raised is a failure too, with its traceback
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
        sys.exit(1)
    print("all steps passed", flush=True)
