"""Pretrained weights from PyTorch: same logits as PyTorch itself, strict checks, sources, preprocessing."""

import sys

import keras
import numpy as np
import pytest
import safetensors.torch
import torch
from torch_reference import ARCHITECTURES, random_resnet

import tfresnet
from tfresnet import weights
from tfresnet.weights import port
from tfresnet.weights.preprocessing import CAFFE, INCEPTION, TORCHVISION, Preprocessing

SHAPE = (64, 64, 3)
torch.set_num_threads(1)  # pytest-xdist already runs one test per core


def save_both(net, folder):
    """``net``'s state dict as ``w.pth`` (torch.save) and ``w.safetensors``."""
    state = net.state_dict()
    torch.save(state, folder / "w.pth")
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "w.safetensors"))
    return folder / "w.pth", folder / "w.safetensors"


def torch_logits(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


@pytest.fixture(scope="module")
def resnet18_files(tmp_path_factory):
    """A random torchvision-layout ResNet-18 (random BatchNorm statistics too), saved in both formats."""
    net = random_resnet("resnet18")
    return (net, *save_both(net, tmp_path_factory.mktemp("resnet18")))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.slow
def test_pytorch_weights_give_pytorchs_logits(name, tmp_path, rng):
    # Each architecture built in PyTorch, saved both ways, loaded through create_model. One load per
    # architecture keeps the suite short: they alternate between the two formats, and the other
    # format must read to the very same arrays.
    net = random_resnet(name)
    pth, st = save_both(net, tmp_path)
    first, second = (pth, st) if sorted(ARCHITECTURES).index(name) % 2 else (st, pth)
    a, b = weights.read_state_dict(first), weights.read_state_dict(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    x = rng.uniform(0, 1, (2, *SHAPE)).astype("float32")
    expected = torch_logits(net, x)
    model = tfresnet.create_model(name, pretrained=str(first), input_shape=SHAPE)
    got = model(x, training=False).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()  # measured 4e-7 to 9e-7
    assert model.preprocessing == TORCHVISION  # a local state dict is taken as torchvision-preprocessed


def test_fine_tuning_loads_the_backbone_and_starts_a_fresh_head(resnet18_files, rng):
    net, pth, _ = resnet18_files
    x = rng.uniform(0, 1, (2, *SHAPE)).astype("float32")
    with torch.no_grad():
        t = torch.from_numpy(x.transpose(0, 3, 1, 2))
        t = net.maxpool(torch.relu(net.bn1(net.conv1(t))))
        pooled = net.layer4(net.layer3(net.layer2(net.layer1(t)))).mean((2, 3)).numpy()
    features = tfresnet.create_model("resnet18", num_classes=0, pretrained=str(pth), input_shape=SHAPE)
    np.testing.assert_allclose(features(x, training=False), pooled, rtol=1e-4, atol=1e-5 * np.abs(pooled).max())
    tuned = tfresnet.create_model("resnet18", num_classes=4, pretrained=str(pth), input_shape=SHAPE)
    fresh = tfresnet.create_model("resnet18", num_classes=4, input_shape=SHAPE)
    head = tuned.get_layer("predictions")
    assert head.kernel.shape == (512, 4)
    np.testing.assert_array_equal(head.bias.numpy(), 0)  # Keras' fresh initialisation, not PyTorch's fc
    np.testing.assert_allclose(tuned.get_layer("conv1_conv").kernel.numpy(),
                               net.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    assert not np.allclose(fresh.get_layer("conv1_conv").kernel.numpy(),
                           tuned.get_layer("conv1_conv").kernel.numpy())


@pytest.fixture(scope="module")
def untouched_resnet18():
    """One ResNet-18 that every rejected file must leave exactly as it was."""
    model = tfresnet.create_model("resnet18", input_shape=SHAPE)
    return model, [w.numpy() for w in model.weights]


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("layer3.1.bn2.running_var"), "tensor 'layer3.1.bn2.running_var' of resnet18 is missing"),
    (lambda s: s.update({"layer5.0.conv1.weight": torch.zeros(1)}), "unexpected tensor 'layer5.0.conv1.weight' (1,)"),
    (lambda s: s.update({"layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)}),
     "tensor 'layer2.0.conv1.weight' has shape (128, 64, 1, 1), resnet18 needs (128, 64, 3, 3)"),
])
def test_a_missing_unexpected_or_misshapen_tensor_is_named_and_nothing_is_loaded(change, message, resnet18_files,
                                                                                  untouched_resnet18, tmp_path):
    state = dict(resnet18_files[0].state_dict())
    change(state)
    path = tmp_path / "bad.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model, before = untouched_resnet18
    with pytest.raises(ValueError, match="^" + str(path).replace(".", r"\.") + ": ") as err:
        port.load_state_dict(model, weights.read_state_dict(path), where=str(path))
    assert message in str(err.value) and "nothing was loaded" in str(err.value)
    assert "\n" not in str(err.value)
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_unreadable_files_are_one_line_errors(resnet18_files, tmp_path, monkeypatch):
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(resnet18_files[2].read_bytes()[:1000])
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a zip archive")
    for path in (truncated, corrupt):
        with pytest.raises(ValueError, match=f"^cannot read {path} as a PyTorch state dict") as err:
            tfresnet.create_model("resnet18", pretrained=str(path))
        assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="pretrained file not found: .*missing.pth"):
        tfresnet.create_model("resnet18", pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="unknown format '.h5'"):
        tfresnet.create_model("resnet18", pretrained=str(tmp_path / "w.h5"))
    # A .pth without torch says how to proceed; .safetensors needs no torch at all.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"needs PyTorch \(pip install torch\)"):
        weights.read_state_dict(resnet18_files[1])
    assert len(weights.read_state_dict(resnet18_files[2])) == len(resnet18_files[0].state_dict())


def test_sources_carry_their_preprocessing_and_wrong_sources_are_clear_errors():
    assert weights.sources("resnet18") == ["timm", "torchvision"]
    assert weights.sources("resnet50") == ["imagenet"]
    assert weights.find("resnet50", "imagenet").preprocessing == CAFFE
    assert weights.find("resnet101v2", "imagenet").preprocessing == INCEPTION
    assert weights.find("resnext50_32x4d", "torchvision").preprocessing == TORCHVISION
    timm = weights.find("resnet50_v1_5", "timm").preprocessing
    assert (timm.crop_fraction, timm.interpolation, timm.mean) == (0.95, "bicubic", TORCHVISION.mean)
    for model in tfresnet.list_models():  # every ImageNet-sized classifier has weights
        if tfresnet.model_spec(model).num_classes == 1000 and model not in ("resnet18v2", "resnet34v2"):
            assert weights.sources(model), model
    with pytest.raises(ValueError, match="resnet50 is the keras.applications layout .* use resnet50_v1_5"):
        tfresnet.create_model("resnet50", pretrained="torchvision")
    with pytest.raises(ValueError, match="model 'resnet18' has no 'imagenet' weights .* its sources: timm, torchvision"):
        tfresnet.create_model("resnet18", pretrained="imagenet")
    with pytest.raises(ValueError, match="unknown value 'torchvison' \\(did you mean 'torchvision'\\?\\)"):
        tfresnet.create_model("resnet18", pretrained="torchvison")


def test_preprocessing_normalises_like_the_published_recipes():
    pixels = np.array([[[[0, 128, 255]]]], np.uint8)
    np.testing.assert_allclose(TORCHVISION.normalize(pixels)[0, 0, 0],
                               (np.array([0, 128, 255]) / 255 - TORCHVISION.mean) / TORCHVISION.std, rtol=1e-6)
    caffe = keras.applications.resnet.preprocess_input(pixels.astype("float32"))
    np.testing.assert_allclose(CAFFE.normalize(pixels), caffe, rtol=1e-6)
    v2 = keras.applications.resnet_v2.preprocess_input(pixels.astype("float32"))
    np.testing.assert_allclose(INCEPTION.normalize(pixels), v2, rtol=1e-6, atol=1e-6)
    assert Preprocessing.from_dict(TORCHVISION.to_dict()) == TORCHVISION
    with pytest.raises(ValueError, match="channel_order: unknown value 'GBR'"):
        Preprocessing((0,) * 3, (1,) * 3, channel_order="GBR")
    with pytest.raises(ValueError, match="unknown keys \\['mode'\\]"):
        Preprocessing.from_dict({**TORCHVISION.to_dict(), "mode": "caffe"})


def test_the_preprocessing_record_is_saved_with_the_model(resnet18_files, tmp_path):
    custom = Preprocessing((0.5,) * 3, (0.25,) * 3, input_size=160, crop_fraction=1.0)
    model = tfresnet.create_model("resnet18", num_classes=3, pretrained=str(resnet18_files[2]), input_shape=SHAPE,
                                  preprocessing=custom)
    assert model.preprocessing == custom
    model.save(tmp_path / "m.keras")
    assert keras.models.load_model(tmp_path / "m.keras").preprocessing == custom
    assert tfresnet.create_model("resnet20_cifar").preprocessing is None  # from scratch: the dataset's own


def test_downloads_are_cached_and_offline_is_a_one_line_error(resnet18_files, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    served = tmp_path / "server" / "resnet18-test.safetensors"
    served.parent.mkdir()
    served.write_bytes(resnet18_files[2].read_bytes())
    monkeypatch.setitem(weights.WEIGHTS._entries, "resnet18.mirror",
                        weights.WeightSource("resnet18", "mirror", TORCHVISION, url=served.as_uri()))
    first = tfresnet.create_model("resnet18", pretrained="mirror", input_shape=SHAPE)
    assert (tmp_path / "home" / "models" / "tfresnet" / "resnet18-test.safetensors").is_file()
    served.unlink()  # the second time comes from the cache
    second = tfresnet.create_model("resnet18", pretrained="mirror", input_shape=SHAPE)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Offline: the URL and what to do instead, on one line.
    url = "http://127.0.0.1:9/resnet18-offline.pth"
    monkeypatch.setitem(weights.WEIGHTS._entries, "resnet18.offline",
                        weights.WeightSource("resnet18", "offline", TORCHVISION, url=url))
    with pytest.raises(RuntimeError, match=f"could not download the offline weights of resnet18 from {url} ") as err:
        tfresnet.create_model("resnet18", pretrained="offline")
    assert "pretrained='/path/to/resnet18-offline.pth'" in str(err.value) and "\n" not in str(err.value)
    assert not list((tmp_path / "home" / "models" / "tfresnet").glob("resnet18-offline*"))


def test_a_saved_tfresnet_model_fine_tunes_with_a_fresh_head(tmp_path, rng):
    shape = (16, 16, 3)
    source = tfresnet.create_model("resnet20_cifar", num_classes=10, input_shape=shape)
    source.save(tmp_path / "pretrained.keras")
    tuned = tfresnet.create_model("resnet20_cifar", num_classes=4, input_shape=shape,
                                  pretrained=str(tmp_path / "pretrained.keras"))
    x = rng.uniform(0, 1, (2, *shape)).astype("float32")
    np.testing.assert_allclose(tuned.extract_features(x)["pooled"], source.extract_features(x)["pooled"], atol=1e-6)
    assert tuned.get_layer("predictions").kernel.shape == (64, 4)
    assert tuned.preprocessing is None  # saved without a record: its dataset's normalisation applies
    with pytest.raises(ValueError, match="pretrained.keras: cannot port .* only in target .*nothing was loaded"):
        tfresnet.create_model("resnet32_cifar", input_shape=shape, pretrained=str(tmp_path / "pretrained.keras"))
    (tmp_path / "broken.keras").write_bytes(b"PK not really")
    with pytest.raises(ValueError, match="cannot read .*broken.keras as a saved Keras model"):
        tfresnet.create_model("resnet20_cifar", pretrained=str(tmp_path / "broken.keras"))
