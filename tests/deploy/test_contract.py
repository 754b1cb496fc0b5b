"""keras_resnet_cifar.deploy.contract: the size bound, the file hashes and the model card's checks."""

from __future__ import annotations

import json
import os

import pytest

from keras_resnet_cifar.deploy import contract, seal
from keras_resnet_cifar.errors import UserError


def test_check_size_refuses_only_beyond_the_limit():
    contract.check_size("m.tflite holds", 100, 100)
    with pytest.raises(UserError, match="101 bytes, more than the 100") as refused:
        contract.check_size("m.tflite holds", 101, 100)
    assert str(refused.value).startswith("m.tflite holds ")


def test_file_hashes_cover_every_file_but_the_card_and_refuse_links(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "variables" / "v.data").write_bytes(b"abc")
    (tmp_path / "saved_model.pb").write_bytes(b"")
    (tmp_path / contract.MODEL_CARD).write_text("{}")
    hashes = contract.file_hashes(tmp_path)
    assert list(hashes) == ["saved_model.pb", "variables/v.data"]
    assert hashes["variables/v.data"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")  # sha256("abc")
    os.symlink("/etc/hostname", tmp_path / "variables" / "link")
    with pytest.raises(UserError, match="link"):
        contract.file_hashes(tmp_path)


def test_check_file_finds_a_changed_file(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"model")
    card = {contract.FILES: contract.file_hashes(tmp_path)}
    contract.check_file(card, tmp_path, "m.tflite")
    contract.check_file(None, tmp_path, "m.tflite")  # nothing recorded: nothing to check
    (tmp_path / "m.tflite").write_bytes(b"modem")
    with pytest.raises(UserError, match="m.tflite does not match the sha256"):
        contract.check_file(card, tmp_path, "m.tflite")


def test_class_names_only_from_a_list_of_strings():
    assert contract.class_names({"class_names": ["a", "b"]}) == ("a", "b")
    for card in (None, {}, {"class_names": []}, {"class_names": ["a", 1]},
                 {"class_names": "ab"}):
        assert contract.class_names(card) is None


def test_a_saved_model_is_vouched_for_only_by_a_sealed_card_of_its_files(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"graph")
    assert "has no model_card.json" in contract.saved_model_problem(tmp_path)
    card = {contract.WRITTEN_BY: "someone", contract.FILES: contract.file_hashes(tmp_path)}
    (tmp_path / contract.MODEL_CARD).write_text(json.dumps(card))
    assert "records no sha256 of saved_model.pb" in contract.saved_model_problem(tmp_path)
    card[contract.WRITTEN_BY] = contract.WRITER
    (tmp_path / contract.MODEL_CARD).write_text(json.dumps(card))
    assert "without this machine's seal" in contract.saved_model_problem(tmp_path)
    card[seal.SEAL] = seal.seal(card, contract.file_hashes(tmp_path))
    (tmp_path / contract.MODEL_CARD).write_text(json.dumps(card))
    assert contract.saved_model_problem(tmp_path) is None
    contract.check_trusted(tmp_path, trust_savedmodel=False)
    (tmp_path / "saved_model.pb").write_bytes(b"hostile graph")
    assert "differs from the sha256" in contract.saved_model_problem(tmp_path)
    with pytest.raises(UserError, match="trust_savedmodel") as refused:
        contract.check_trusted(tmp_path, trust_savedmodel=False)
    assert refused.value.argument == "trust_savedmodel"
    contract.check_trusted(tmp_path, trust_savedmodel=True)
