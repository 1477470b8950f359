//! The ktsu LLM gateway: the only holder of provider credentials (built on `ktsu-shared`).
