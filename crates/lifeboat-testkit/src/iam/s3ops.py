"""S3 and IAM calls the Object Lock tests make as an administrator or an attacker, through
boto3 (installed with moto). One operation per run; the result as JSON on stdout.

    setup ENDPOINT POLICY_FILE      buckets `locked` (Object Lock on) and `plain`; users
                                    `admin` (everything) and `host` (POLICY_FILE); their keys
    OP ENDPOINT KEY_ID SECRET ...   as that user: see the functions below
"""
import base64
import datetime
import hashlib
import json
import sys

import boto3


def client(service, endpoint, key_id="x", secret="x"):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def setup(endpoint, policy_file):
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket="plain")
    iam = client("iam", endpoint)
    everything = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    keys = {}
    for user, policy in [("admin", everything), ("host", json.load(open(policy_file)))]:
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="lifeboat", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = [k["AccessKeyId"], k["SecretAccessKey"]]
    return keys


def objects(s3, bucket, prefix):
    """Current objects under PREFIX, each with its retention."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            h = s3.head_object(Bucket=bucket, Key=o["Key"])
            until = h.get("ObjectLockRetainUntilDate")
            out.append({"key": o["Key"], "mode": h.get("ObjectLockMode"),
                        "until": until.isoformat() if until else None,
                        "written": o["LastModified"].isoformat()})
    return out


def lock_config(s3, bucket):
    return s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]


def delete(s3, bucket, key, version=None):
    """Delete KEY (a delete marker) or one VERSION of it; the error code if refused."""
    try:
        if version:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
        return "ok"
    except s3.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def versions(s3, bucket, key):
    r = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in r.get("Versions", []) if v["Key"] == key]


def overwrite(s3, bucket, key):
    body = b"not what the name promises"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentMD5=md5)
        return "ok"
    except s3.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def shorten(s3, bucket, prefix, seconds):
    """Governance only: bring every version under PREFIX to the end of its retention in
    SECONDS (what passing time does), bypassing governance as an administrator may."""
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(seconds))
    n = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            s3.put_object_retention(
                Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"],
                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
                BypassGovernanceRetention=True)
            n += 1
    return n


def main(argv):
    op = argv[0]
    if op == "setup":
        return setup(argv[1], argv[2])
    s3 = client("s3", argv[1], argv[2], argv[3])
    return globals()[op.replace("-", "_")](s3, *argv[4:])


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
