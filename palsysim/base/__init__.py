"""The ground floor: errors, paths, the Yanagihara vocabulary, the photo and video readers, file writing,
output-path safety, the model-file catalog and every folder layout. It imports no other part of the project."""
