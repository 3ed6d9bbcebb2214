"""Drives Tether's role assignments with the official Azure SDK (`azure-mgmt-authorization`),
unchanged, with tokens from the mock Azure backend's token endpoint (client credentials).

Run by tests/integration/authz.rs with the python of a virtualenv holding the SDK:

    python authz_sdk.py API_URL MOCK_URL TENANT SUBSCRIPTION RUN_ID \
        OWNER_CLIENT OWNER_SECRET BOB_CLIENT BOB_SECRET BOB_OBJECT_ID

The owner is Owner at the root scope (a bootstrap owner of the replica); Bob starts with no
role. Prints one line per step; exits 0 only if every check passed.
"""

import json
import sys
import time
import traceback
import urllib.parse
import urllib.request
import uuid

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


class MockCredential:
    """A TokenCredential fetching client-credentials tokens from the mock's Entra endpoint."""

    def __init__(self, mock, tenant, client_id, secret):
        self._url = f"{mock}/{tenant}/oauth2/v2.0/token"
        self._client_id = client_id
        self._secret = secret

    def get_token(self, *scopes, **kwargs):
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret,
            "scope": scopes[0],
        }).encode()
        with urllib.request.urlopen(urllib.request.Request(self._url, data=form), timeout=10) as r:
            body = json.load(r)
        return AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))


class AllowPlainHttp(SansIOHTTPPolicy):
    """Lets the bearer-token policy send tokens over plain http (see sdk_e2e.py)."""

    def on_request(self, request):
        request.context["enforce_https"] = False


def client(api, credential, subscription):
    return AuthorizationManagementClient(
        credential, subscription, base_url=api, per_call_policies=[AllowPlainHttp()])


def refused(call, status, code):
    try:
        call()
    except HttpResponseError as e:
        check(e.status_code == status, f"expected {status}, got {e.status_code}: {e.message}")
        check(e.error is not None and e.error.code == code, f"expected {code}, got {e.error and e.error.code}")
        return
    raise CheckFailed(f"expected {status} {code}, the call succeeded")


def main():
    (api, mock, tenant, subscription, run_id,
     owner_client, owner_secret, bob_client, bob_secret, bob_oid) = sys.argv[1:11]
    owner = client(api, MockCredential(mock, tenant, owner_client, owner_secret), subscription)
    bob = client(api, MockCredential(mock, tenant, bob_client, bob_secret), subscription)
    sub = f"/subscriptions/{subscription}"
    rg = f"{sub}/resourceGroups/rg-{run_id}"
    other_rg = f"{sub}/resourceGroups/rg-other-{run_id}"

    readers = list(owner.role_definitions.list(scope=sub, filter="roleName eq 'Reader'"))
    check(len(readers) == 1 and readers[0].role_name == "Reader", f"role definitions: {readers}")
    reader = readers[0]
    check(reader.permissions[0].actions == ["*/read"], "Reader's actions")
    check(owner.role_definitions.get_by_id(reader.id).role_name == "Reader", "definition by id")
    print("role definitions: ok")

    name = str(uuid.uuid4())
    created = owner.role_assignments.create(rg, name, RoleAssignmentCreateParameters(
        role_definition_id=reader.id, principal_id=bob_oid, principal_type="ServicePrincipal",
        description=f"run {run_id}"))
    check(created.name == name, f"name {created.name}")
    check(created.scope.lower() == rg.lower(), f"scope {created.scope}")
    check(created.principal_id == bob_oid, f"principal {created.principal_id}")
    check(created.role_definition_id.lower().endswith(reader.name.lower()), "role")
    check(created.type == "Microsoft.Authorization/roleAssignments", f"type {created.type}")
    print("create: ok")

    again = owner.role_assignments.create(rg, name, RoleAssignmentCreateParameters(
        role_definition_id=reader.id, principal_id=bob_oid, principal_type="ServicePrincipal"))
    check(again.id == created.id, "a replayed create returns the assignment")
    refused(lambda: owner.role_assignments.create(rg, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=reader.id, principal_id=bob_oid)), 409, "RoleAssignmentExists")
    print("idempotency and duplicates: ok")

    check(owner.role_assignments.get(rg, name).id == created.id, "get")
    check(owner.role_assignments.get_by_id(created.id).id == created.id, "get by id")
    at_scope = [a.name for a in owner.role_assignments.list_for_scope(rg, filter="atScope()")]
    check(name in at_scope, f"list at scope: {at_scope}")
    bobs = list(owner.role_assignments.list_for_subscription(filter=f"principalId eq '{bob_oid}'"))
    check([a.name for a in bobs] == [name], f"Bob's: {[a.name for a in bobs]}")
    in_group = [a.name for a in owner.role_assignments.list_for_resource_group(f"rg-{run_id}")]
    check(name in in_group, "list for the resource group")
    print("read and list: ok")

    # Bob is Reader of the group: he reads its assignments, but may not assign, nor read others.
    check(name in [a.name for a in bob.role_assignments.list_for_scope(rg)], "Bob lists his group")
    refused(lambda: bob.role_assignments.create(rg, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=reader.id.replace(reader.name, "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
        principal_id=bob_oid)), 403, "AuthorizationFailed")
    refused(lambda: list(bob.role_assignments.list_for_scope(other_rg)), 403, "AuthorizationFailed")
    refused(lambda: bob.role_assignments.delete(rg, name), 403, "AuthorizationFailed")
    print("Bob's limits: ok")

    deleted = owner.role_assignments.delete(rg, name)
    check(deleted is not None and deleted.id == created.id, "delete returns the assignment")
    check(owner.role_assignments.delete(rg, name) is None, "a second delete is a 204")
    refused(lambda: owner.role_assignments.get(rg, name), 404, "RoleAssignmentNotFound")
    # Bob's cached rights expire within the replica's assignment cache.
    deadline = time.time() + 30
    while True:
        try:
            list(bob.role_assignments.list_for_scope(rg))
        except HttpResponseError as e:
            check(e.status_code == 403, f"after the revocation: {e.status_code}")
            break
        check(time.time() < deadline, "Bob kept his access after the revocation")
        time.sleep(0.2)
    print("delete and revocation: ok")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - report any failure with its trace
        traceback.print_exc()
        sys.exit(1)
