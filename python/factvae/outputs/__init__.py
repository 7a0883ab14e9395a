"""What a trained model gives: cell embeddings, augmented ATAC, gene-peak links."""
