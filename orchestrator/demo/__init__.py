"""The end-to-end demo (`sovereign demo`): the seed story on the embedded default."""
