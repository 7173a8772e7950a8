"""Where the SigV4 test vector of `src/providers/aws/sigv4.rs` comes from.

Python's botocore (an implementation independent of the Rust `aws-sigv4` crate) signs the same
Bedrock Converse request the Rust test signs, with the clock fixed, and prints the headers it
adds. The Rust test holds the printed `Authorization` as a constant.

Run it with botocore installed (it is not in the SDK tests' requirements):
    python -m venv /tmp/boto && /tmp/boto/bin/pip install botocore
    /tmp/boto/bin/python tests/sdk/sigv4_vector.py
(The file's name does not start with `test_`, so pytest does not collect it.)
"""

import datetime
from unittest import mock

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="
URL = (
    "https://bedrock-runtime.us-east-1.amazonaws.com"
    "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
)
BODY = b'{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":256}}'
NOW = datetime.datetime(2026, 1, 1, 0, 0, 0)


def main() -> None:
    request = AWSRequest(
        method="POST", url=URL, data=BODY, headers={"Content-Type": "application/json"}
    )
    signer = botocore.auth.SigV4Auth(
        Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "bedrock", "us-east-1"
    )
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=NOW):
        signer.add_auth(request)
    for name in ("X-Amz-Date", "X-Amz-Security-Token", "Authorization"):
        print(f"{name}: {request.headers[name]}")


if __name__ == "__main__":
    main()
