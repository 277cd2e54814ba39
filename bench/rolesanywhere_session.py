"""Prints credential_process JSON from AWS's iam-rolesanywhere-session client (PyPI).

bench/run.sh runs this as the Python peer of `ra-agent credential-process`:
    python3 bench/rolesanywhere_session.py CERT KEY CHAIN TRUST_ANCHOR PROFILE ROLE HOST:PORT CA
"""

import json
import sys

from iam_rolesanywhere_session import IAMRolesAnywhereSession


def main() -> None:
    cert, key, chain, anchor, profile, role, endpoint, ca = sys.argv[1:]
    session = IAMRolesAnywhereSession(
        profile_arn=profile,
        role_arn=role,
        trust_anchor_arn=anchor,
        certificate=cert,
        private_key=key,
        certificate_chain=chain,
        region="us-east-1",
        endpoint=endpoint,
        verify=ca,
    )
    credentials = session.get_refreshable_credentials().get_frozen_credentials()
    print(
        json.dumps(
            {
                "Version": 1,
                "AccessKeyId": credentials.access_key,
                "SecretAccessKey": credentials.secret_key,
                "SessionToken": credentials.token,
            }
        )
    )


if __name__ == "__main__":
    main()
