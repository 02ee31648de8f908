"""The class names of the built-in datasets and of the ImageNet-1k weights, shipped with the package.

Nothing can be downloaded at run time, so the names are here: the 1000 ImageNet-1k names
(``imagenet_classes.txt``, torchvision's list, one name per line in the order of the synset ids
that every published ImageNet checkpoint's classifier follows) and those of the small datasets, in
their label order (tensorflow-datasets' ``ClassLabel`` order; imagenette's ten synsets by name).
"""

from __future__ import annotations

import functools
import importlib.resources

MNIST = tuple(str(digit) for digit in range(10))
FASHION_MNIST = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-100's fine labels, whose indices are their alphabetical order.
CIFAR100 = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle
caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish
forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
willow_tree wolf woman worm""".split())
# Imagenette's ten ImageNet classes, in the order of their synset ids (n01440764, n02102040, ...).
IMAGENETTE = ("tench", "English springer", "cassette player", "chain saw", "church", "French horn", "garbage truck",
              "gas pump", "golf ball", "parachute")


@functools.cache
def imagenet() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index ``i`` being the class of logit ``i``."""
    text = importlib.resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def numbered(num_classes: int) -> tuple[str, ...]:
    """``class_0 ... class_{N-1}``: the names of classes nobody named (arrays, synthetic data, old runs)."""
    return tuple(f"class_{i}" for i in range(num_classes))
