"""The batch job: manifests in, validated clips sampled once, embedded into Milvus."""
