"""Data: folder of MRI slices -> deduplicated, leakage-free split -> tf.data batches."""

# The canonical class order. Every label index, confusion matrix and logit in the project
# uses this order; folder names are mapped onto it by `braingan.data.scan.canonical_class`.
CLASSES = ("glioma", "meningioma", "no_tumor", "pituitary")
NUM_CLASSES = len(CLASSES)
