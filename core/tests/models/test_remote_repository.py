"""Model repositories in S3, against a real S3 API server on localhost (moto's standalone
server, over HTTP): the s3fs client talks to it exactly as to AWS, with signed requests."""

import numpy as np
import pytest

from expr_backend import ADD_SUB, make_server
from triton_core import ErrorCode, TritonError
from triton_core.models.remote import parse_location
from triton_core.testing import free_port

pytest.importorskip("s3fs", reason="the s3 extra (pip install 'triton-core[s3]') is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[s3] with flask is not installed")
boto3 = pytest.importorskip("boto3")

ADMIN_POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'


@pytest.fixture(scope="module")
def s3_endpoint():
    """host:port of a running S3 API that checks credentials, and a key pair it accepts."""
    from moto import settings

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="triton")
    iam.put_user_policy(UserName="triton", PolicyName="all", PolicyDocument=ADMIN_POLICY)
    key = iam.create_access_key(UserName="triton")["AccessKey"]
    # From here on every request must be signed with a key the server knows (moto's IAM).
    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield f"127.0.0.1:{port}", key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = before
        server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, request):
    """A fresh bucket (named after the test), credentials in the environment as Triton reads them."""
    hostport, key_id, secret = s3_endpoint
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("TRITON_AWS_MOUNT_DIRECTORY", raising=False)
    client = boto3.client("s3", endpoint_url=f"http://{hostport}", region_name="us-east-1",
                          aws_access_key_id=key_id, aws_secret_access_key=secret)
    bucket = request.node.name.replace("_", "-").lower()[:60]
    client.create_bucket(Bucket=bucket)
    return hostport, bucket, client


def put_model(client, bucket, prefix, name, config, versions=(1,)):
    client.put_object(Bucket=bucket, Key=f"{prefix}/{name}/config.pbtxt", Body=config.encode())
    for v in versions:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}/{v}/model.expr", Body=b"ok")


def _infer_add(s):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    out = s.model("add").infer({"INPUT0": a, "INPUT1": np.ones_like(a)})
    np.testing.assert_array_equal(out["OUTPUT0"], a + 1)


def test_loads_and_serves_from_s3(s3, tmp_path):
    hostport, bucket, client = s3
    for name in ("add", "add2", "add3"):  # loaded on several threads at once
        put_model(client, bucket, "models", name, ADD_SUB, versions=(1, 2))
    with make_server(tmp_path, model_repository=[f"s3://{hostport}/{bucket}/models"],
                     model_load_thread_count=3) as s:
        assert all(s.model_ready(n) for n in ("add", "add2", "add3"))
        assert s.model_metadata("add")["versions"] == ["2"]
        _infer_add(s)
        mirror = s.repository.mirrors[0]
        assert (mirror.local / "add" / "1" / "model.expr").read_text() == "ok"
    assert not mirror.local.exists()  # the temporary copy goes with the server


def test_poll_sees_new_version_and_removed_model(s3, tmp_path):
    hostport, bucket, client = s3
    put_model(client, bucket, "repo", "add", ADD_SUB)
    put_model(client, bucket, "repo", "late", ADD_SUB)
    url = f"s3://{hostport}/{bucket}/repo"
    with make_server(tmp_path, model_repository=[url], model_control_mode="poll",
                     repository_poll_secs=3600) as s:
        assert s.model_metadata("add")["versions"] == ["1"]
        client.put_object(Bucket=bucket, Key="repo/add/2/model.expr", Body=b"ok")
        s.manager.poll_once()
        assert s.model_metadata("add")["versions"] == ["2"]
        _infer_add(s)
        client.delete_objects(Bucket=bucket, Delete={"Objects": [
            {"Key": "repo/late/config.pbtxt"}, {"Key": "repo/late/1/model.expr"}]})
        s.manager.poll_once()
        assert not s.model_ready("late")
        assert not (s.repository.mirrors[0].local / "late").exists()


def test_explicit_load_sees_changed_config(s3, tmp_path):
    hostport, bucket, client = s3
    put_model(client, bucket, "m", "add", ADD_SUB)
    url = f"s3://{hostport}/{bucket}/m"
    with make_server(tmp_path, model_repository=[url], model_control_mode="explicit") as s:
        assert not s.model_ready("add")
        s.load_model("add")
        assert s.model_config_json("add")["max_batch_size"] == 8
        client.put_object(Bucket=bucket, Key="m/add/config.pbtxt",
                          Body=ADD_SUB.replace("max_batch_size: 8", "max_batch_size: 4").encode())
        s.load_model("add")
        assert s.model_config_json("add")["max_batch_size"] == 4


def test_missing_bucket_is_a_clear_error(s3, tmp_path):
    hostport, _, _ = s3
    url = f"s3://{hostport}/no-such-bucket/models"
    s = make_server(tmp_path, model_repository=[url])
    with pytest.raises(TritonError) as e:
        s.start()
    s.stop()
    assert e.value.code is ErrorCode.INVALID_ARG
    assert f"failed to stat model repository path '{url}'" in e.value.message
    assert "bucket 'no-such-bucket' does not exist" in e.value.message


def test_missing_folder_in_bucket_is_a_clear_error(s3, tmp_path):
    hostport, bucket, _ = s3
    s = make_server(tmp_path, model_repository=[f"s3://{hostport}/{bucket}/nothing-here"])
    with pytest.raises(TritonError, match=f"no folder '{bucket}/nothing-here' in bucket"):
        s.start()
    s.stop()


def test_bad_credentials_are_a_clear_error(s3, tmp_path, monkeypatch):
    hostport, bucket, client = s3
    put_model(client, bucket, "models", "add", ADD_SUB)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAKEY000000000")
    s = make_server(tmp_path, model_repository=[f"s3://{hostport}/{bucket}/models"])
    with pytest.raises(TritonError) as e:
        s.start()
    s.stop()
    assert "access denied" in e.value.message
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in e.value.message


def test_mount_directory_holds_the_copy(s3, tmp_path, monkeypatch):
    hostport, bucket, client = s3
    put_model(client, bucket, "models", "add", ADD_SUB)
    mount = tmp_path / "mount"
    mount.mkdir()
    monkeypatch.setenv("TRITON_AWS_MOUNT_DIRECTORY", str(mount))
    with make_server(tmp_path, model_repository=[f"s3://{hostport}/{bucket}/models"]) as s:
        _infer_add(s)
    assert (mount / "add" / "config.pbtxt").is_file()  # the user's folder stays


@pytest.mark.parametrize("url, root, options", [
    ("s3://bucket/a/b", "bucket/a/b", {"client_kwargs": {"region_name": "eu-west-1"}}),
    ("s3://minio.local:9000/bucket/a", "bucket/a",
     {"client_kwargs": {"endpoint_url": "http://minio.local:9000", "region_name": "eu-west-1"}}),
    ("s3://https://minio.local:9000/bucket/", "bucket",
     {"client_kwargs": {"endpoint_url": "https://minio.local:9000", "region_name": "eu-west-1"}}),
    ("gs://bucket/repo", "bucket/repo", {"token": "/k.json"}),
    ("as://acct/container/repo", "container/repo", {"account_name": "acct", "account_key": "K"}),
])
def test_paths_as_triton_spells_them(url, root, options):
    env = {"AWS_DEFAULT_REGION": "eu-west-1", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
           "AZURE_STORAGE_KEY": "K"}
    loc = parse_location(url, env)
    assert (loc.root, loc.storage_options) == (root, options)


def test_path_without_bucket_is_refused():
    with pytest.raises(TritonError, match="names no bucket"):
        parse_location("s3://", {})


def test_cli_keeps_object_storage_paths_as_written(tmp_path):
    from triton_core.cli import build_parser, options_from_args

    a = build_parser().parse_args(["--model-repository", "s3://host:9000/bucket/models",
                                   "--model-repository", str(tmp_path)])
    assert options_from_args(a).model_repository == ["s3://host:9000/bucket/models", tmp_path]


def test_missing_implementation_names_the_extra(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    s = make_server(tmp_path, model_repository=["gs://bucket/models"])
    with pytest.raises(TritonError, match=r"needs gcsfs .*pip install 'triton-core\[gcs\]'"):
        s.start()
    s.stop()
