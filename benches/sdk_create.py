"""Times the official Azure SDK's create of a linker against Tether (run by `tether-bench sdk`).

    python sdk_create.py API_URL TOKEN PLAN_JSON

PLAN_JSON is a list of {"site", "db", "name"}: one timed
`client.linker.begin_create_or_update(site, name, ...).result()` each, on sources the bench
seeded. Prints one JSON line per create: {"run", "wall_s", "state"}. The client is built once,
outside the timings, over plain http with a static token (as tests/python/sdk_e2e.py does).
"""

import json
import sys
import time

from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.servicelinker import ServiceLinkerManagementClient, models


class StaticToken:
    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)


class AllowPlainHttp(SansIOHTTPPolicy):
    """Lets the bearer-token policy send the token over plain http (see sdk_e2e.py)."""

    def on_request(self, request):
        request.context["enforce_https"] = False


def main(api_url, token, plan_path):
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    client = ServiceLinkerManagementClient(
        StaticToken(token), base_url=api_url, per_call_policies=[AllowPlainHttp()]
    )
    for i, item in enumerate(plan):
        linker = models.LinkerResource(
            target_service=models.AzureResource(id=item["db"]),
            auth_info=models.SecretAuthInfo(
                name="benchuser", secret_info=models.ValueSecretInfo(value="bench pw 1")
            ),
            client_type="python",
            v_net_solution=models.VNetSolution(type="firewall"),
        )
        start = time.perf_counter()
        result = client.linker.begin_create_or_update(item["site"], item["name"], linker).result()
        wall = time.perf_counter() - start
        print(json.dumps({"run": i, "wall_s": wall, "state": result.provisioning_state}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} API_URL TOKEN PLAN_JSON")
    main(*sys.argv[1:])
