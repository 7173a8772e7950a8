# The bench's prompt, sourced by bench/run.sh and scripts/pgo-train.sh (the training runs what the
# bench measures). The mock echoes the last user message; streamed, one chunk per word (18 words).
SYS='{"role":"system","content":"You are a helpful assistant."}'
USR='{"role":"user","content":"Please write one short friendly sentence that greets the reader and wishes them a very pleasant productive day"}'
