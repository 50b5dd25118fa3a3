"""The synthetic prompt `arbiter bench` times (src/cli/bench.rs's FILLER, repeated and cut to
length), for the companion scripts that time other engines on the same tokens."""

FILLER = (
    "The judge reads both answers to the user's question and compares them on "
    "correctness, completeness and clarity. Answer A computes the sum with a loop: `for i in range(n): "
    "total += values[i]`, while answer B uses the built-in sum and handles the empty list. "
)


def prompt_ids(encode, n):
    """The first n token ids of the filler repeated, as `encode(text)` tokenizes it."""
    text, ids = "", []
    while len(ids) < n:
        text += FILLER
        ids = encode(text)
    return ids[: max(n, 1)]
