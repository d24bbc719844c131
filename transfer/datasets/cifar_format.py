"""The on-disk layout of the CIFAR-100 python archive: member names, image shape, class counts.

Shared by the reader (cifar_archive.py) and the synthetic writer (synthetic_archive.py), so that
neither depends on the other and the download stage never reruns when the reader changes.
"""

ARCHIVE_NAME = "cifar-100-python.tar.gz"
NUM_CLASSES = 100
NUM_COARSE_CLASSES = 20
IMAGE_SHAPE = (32, 32, 3)  # height, width, channels (HWC, as returned by read_archive)

ARCHIVE_DIR = "cifar-100-python"
TRAIN_MEMBER = f"{ARCHIVE_DIR}/train"
TEST_MEMBER = f"{ARCHIVE_DIR}/test"
META_MEMBER = f"{ARCHIVE_DIR}/meta"
STRAY_MEMBER = f"{ARCHIVE_DIR}/file.txt~"  # the real archive ships this editor backup; readers ignore it

IMAGE_HEIGHT, IMAGE_WIDTH, IMAGE_CHANNELS = IMAGE_SHAPE
ROW_LENGTH = IMAGE_CHANNELS * IMAGE_HEIGHT * IMAGE_WIDTH  # 3072 bytes: 1024 red, 1024 green, 1024 blue
FINE_PER_COARSE = NUM_CLASSES // NUM_COARSE_CLASSES  # 5 fine classes per synthetic superclass

# The official archive's split sizes: the most images a member of this format holds. The reader bounds each
# member's bytes by them (cifar_archive.py) and the synthetic stand-in may not exceed them (archive_source.py).
TRAIN_IMAGES = 50_000
TEST_IMAGES = 10_000

# The CIFAR-10 python archive: the same 32x32 rows, five training batches of 10,000, one test batch, and 10
# classes without superclasses; its label key is "labels" (CIFAR-100's are "fine_labels", "coarse_labels").
CIFAR10_ARCHIVE_NAME = "cifar-10-python.tar.gz"
CIFAR10_NUM_CLASSES = 10
CIFAR10_ARCHIVE_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_MEMBERS = tuple(f"{CIFAR10_ARCHIVE_DIR}/data_batch_{index}" for index in range(1, 6))
CIFAR10_TEST_MEMBER = f"{CIFAR10_ARCHIVE_DIR}/test_batch"
CIFAR10_META_MEMBER = f"{CIFAR10_ARCHIVE_DIR}/batches.meta"
CIFAR10_README_MEMBER = f"{CIFAR10_ARCHIVE_DIR}/readme.html"  # the real archive ships it; readers ignore it
CIFAR10_BATCH_IMAGES = 10_000  # images in each of the official archive's batches
