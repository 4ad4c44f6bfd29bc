"""simplug-attention-pooling: a head that attends over the embeddings of several encoders."""
