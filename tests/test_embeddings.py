"""The sentence embedder: unit vectors, per-text cache, cosine similarity, chunked nearest neighbours."""

import numpy as np
import pytest

from culture_align.embeddings import SentenceEmbedder, max_similarity


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder(batch_size=8)


def test_encode_unit_vectors_and_cache(embedder):
    texts = ["Family is very important in my life.", "I trust my neighbours.", "Family is very important in my life."]
    before = embedder.stats.sentences_encoded
    vectors = embedder.encode(texts)
    assert vectors.shape == (3, embedder.dimension) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.stats.sentences_encoded - before == 2  # the repeated text is encoded once
    hits = embedder.stats.cache_hits
    np.testing.assert_array_equal(embedder.encode(texts[:1]), vectors[:1])
    assert embedder.stats.cache_hits == hits + 1
    assert embedder.encode([]).shape == (0, embedder.dimension)


def test_paraphrase_more_similar_than_unrelated(embedder):
    sims = embedder.similarity(["How important is religion in your life?"],
                               ["How much does religion matter to you?", "The train leaves at nine tomorrow."])
    assert sims.shape == (1, 2)
    assert sims[0, 0] > 0.6 > sims[0, 1]
    pair = embedder.pairwise(["a cat sat", "religion matters"], ["a cat sat", "the train is late"])
    assert pair[0] == pytest.approx(1.0, abs=1e-5) and pair[1] < 0.5
    with pytest.raises(ValueError, match="equal lengths"):
        embedder.pairwise(["a"], [])


def test_max_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(50, 8)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[:20] + 0.01 * rng.normal(size=(20, 8)).astype(np.float32)
    scores, index = max_similarity(queries, corpus, chunk_size=7)
    full = queries @ corpus.T
    np.testing.assert_array_equal(index, full.argmax(1))
    np.testing.assert_allclose(scores, full.max(1), rtol=1e-6)
    self_scores, self_index = max_similarity(corpus, corpus, chunk_size=7, exclude_self=True)
    assert (self_index != np.arange(50)).all()
    masked = corpus @ corpus.T
    np.fill_diagonal(masked, -np.inf)
    np.testing.assert_allclose(self_scores, masked.max(1), rtol=1e-6)
    empty_scores, empty_index = max_similarity(queries, corpus[:0])
    assert np.isneginf(empty_scores).all() and (empty_index == -1).all()
