import pytest

from kubeformer_builder.architectures import ARCHITECTURES, find_architecture
from kubeformer_builder.errors import UnsupportedModelError
from tests.fixtures.models import FAMILIES


def test_every_supported_architecture_has_a_test_model():
    """A family added to the registry must come with a tiny model the tests build and export."""
    assert set(ARCHITECTURES) == set(FAMILIES)


def test_unsupported_architecture_lists_the_supported_ones():
    with pytest.raises(UnsupportedModelError) as caught:
        find_architecture("gpt2")
    assert "'gpt2' is not supported" in str(caught.value)
    assert "bert, camembert, deberta-v2" in str(caught.value)
