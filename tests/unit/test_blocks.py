"""Pretrained bases: offline, ImageNet weights fail with what to do; below a base's minimum input
size, a clear error."""

import pytest

from search.errors import DownloadError

pytestmark = pytest.mark.slow


def test_imagenet_weights_offline_fail_with_what_to_do(monkeypatch, tmp_path):
    from search import blocks
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty weights cache
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # a proxy nobody listens on: offline
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    with pytest.raises(DownloadError, match=r"ImageNet weights for mobilenet_v2 cannot be downloaded "
                                           r"here \(offline\?\); use --set weights=none"):
        blocks.pretrained_base("mobilenet_v2", "imagenet", 32)
    with pytest.raises(ValueError, match="below xception's minimum input size 71"):
        blocks.pretrained_base("xception", "none", 32)
