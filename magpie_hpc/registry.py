"""Built-in presets: the six math domains, the model menu and its chat-template families.

These are data, not logic: `config.py` turns them into validated defaults that a TOML file or CLI
flag can override field by field.
"""

from __future__ import annotations

from . import chat_templates

# Magpie's "math" control task: the system text that steers the pre-query towards a math problem.
# The domain focus is appended so each domain gets its own research-level topics.
MATH_CONTROL_SYSTEM = (
    "You are an AI assistant designed to provide helpful, step-by-step guidance on solving math "
    "problems. The user will ask you a wide range of complex mathematical questions. Your purpose "
    "is to assist users in understanding mathematical concepts, working through equations, and "
    "arriving at the correct solutions."
)
MAX_DIFFICULTY_SYSTEM = (
    "MAXIMUM DIFFICULTY MODE: the user asks research-level problems that need 10-20 step "
    "reasoning chains, rigorous proofs and precise statements; each problem is self-contained, "
    "states every object it uses, and ends with a clear question. Focus: {focus}."
)

# Per-domain presets (SPEC.md table). Temperatures of the last three domains come from the public
# generate_domain_dataset.sh the seed analyses.
DOMAIN_PRESETS: dict[str, dict] = {
    "algebra": dict(
        count=10_000,
        instruction_temperature=1.3,
        response_temperature=0.05,
        description="ADVANCED ALGEBRA - Abstract algebra, Galois theory, field extensions, matrix theory",
        focus="abstract algebra, Galois theory, field extensions, matrix theory",
    ),
    "calculus": dict(
        count=10_000,
        instruction_temperature=1.2,
        response_temperature=0.0,
        description="ADVANCED CALCULUS - Real/complex analysis, measure theory, functional analysis",
        focus="real and complex analysis, measure theory, functional analysis",
    ),
    "geometry": dict(
        count=6_000,
        instruction_temperature=1.35,
        response_temperature=0.05,
        description="ADVANCED GEOMETRY - Projective geometry, differential geometry, algebraic geometry",
        focus="projective, differential and algebraic geometry",
    ),
    "statistics": dict(
        count=6_000,
        instruction_temperature=1.1,
        response_temperature=0.0,
        description="ADVANCED STATISTICS - Measure-theoretic probability, advanced inference, martingales",
        focus="measure-theoretic probability, advanced statistical inference, martingales",
    ),
    "number_theory": dict(
        count=4_000,
        instruction_temperature=1.25,
        response_temperature=0.0,
        description="ADVANCED NUMBER THEORY - Analytic and algebraic number theory, L-functions",
        focus="analytic and algebraic number theory, L-functions",
    ),
    "discrete": dict(
        count=8_000,
        instruction_temperature=1.3,
        response_temperature=0.05,
        description="ADVANCED DISCRETE MATHEMATICS - Extremal graph theory, algebraic combinatorics",
        focus="extremal graph theory, algebraic combinatorics",
    ),
}

# Chat-template families. `pre_query` is the Magpie prompt: everything up to where the user's text
# would start. `{system}` is replaced by the system text. Stop strings end a generated *user* turn.
TEMPLATE_FAMILIES: dict[str, dict] = {
    # DeepSeek-R1-Distill (Qwen and Llama vocabularies): <｜User｜>/<｜Assistant｜> are plain added
    # tokens, so stop strings match in decoded text; never the DeepSeek-V2 "User: " form (defect 1).
    "deepseek_r1": dict(
        pre_query="<｜begin▁of▁sentence｜>{system}<｜User｜>",
        stop=["<｜Assistant｜>", "<｜end▁of▁sentence｜>", "<｜User｜>"],
        bos="<｜begin▁of▁sentence｜>",
        user_marker="<｜User｜>",
        reasoning=True,
    ),
    "chatml": dict(
        pre_query="<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n",
        stop=["<|im_end|>", "<|endoftext|>", "<|im_start|>"],
        bos=None,
        user_marker="<|im_start|>user\n",
        reasoning=False,
    ),
    "llama3": dict(
        pre_query=(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n"
        ),
        stop=["<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>"],
        bos="<|begin_of_text|>",
        user_marker="<|start_header_id|>user<|end_header_id|>\n\n",
        reasoning=False,
    ),
    # Llama 3.1 / 3.3 Instruct. Their chat template opens *every* system block (and renders one
    # even without a system message) with "Cutting Knowledge Date: December 2023\nToday Date:
    # 26 Jul 2024\n\n" before the system text; the date is the template's fixed default, not the
    # clock. Magpie's own Llama-3 pre-query is the bare user header (no system block at all); this
    # pipeline steers with a system message, and the faithful form of a system turn for these
    # models is the one they were tuned on, which is also what the response stage renders through
    # the same template. So the family keeps the dated lines and derive_pre_query must equal it.
    "llama3_1": dict(
        pre_query=(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{system}<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n"
        ),
        stop=["<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>"],
        bos="<|begin_of_text|>",
        user_marker="<|start_header_id|>user<|end_header_id|>\n\n",
        reasoning=False,
    ),
}

# The original script's model menu, same keys. Stop ids are those of the real vocabularies; the
# pipeline re-derives them from the loaded tokenizer and refuses a mismatch. Tensor parallel is the
# planner's (roofline.py). max_position_embeddings
# is the context of config.json (launch checks max_model_len against it, before any weight is
# read); `magpie_hpc.fixtures` writes tokenizer-only doubles of these five with the same
# values, and tests/test_menu_models.py checks every entry against them.
MODEL_MENU: dict[str, dict] = {
    "1": dict(
        hub_id="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        family="deepseek_r1",
        description="DeepSeek R1 Distill Qwen 32B (Recommended - Balanced performance)",
        stop_token_ids=[151645, 151643, 151644],
        max_model_len=8192,
        max_position_embeddings=131072,
    ),
    "2": dict(
        hub_id="deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        family="deepseek_r1",
        description="DeepSeek R1 Distill Llama 70B (Highest quality - needs 4 GPUs)",
        stop_token_ids=[128012, 128001, 128011],
        max_model_len=8192,
        max_position_embeddings=131072,
    ),
    "3": dict(
        hub_id="Qwen/Qwen2.5-Math-72B-Instruct",
        family="chatml",
        description="Qwen2.5 Math 72B Instruct (Math specialist - needs 4 GPUs)",
        # A 4,096-position model: vLLM refuses a larger max_model_len. Prompt + max_tokens must fit
        # too, so with the default 4,096-token responses launch refuses and says what to lower.
        stop_token_ids=[151645, 151643, 151644],
        max_model_len=4096,
        max_position_embeddings=4096,
    ),
    "4": dict(
        hub_id="Qwen/Qwen2.5-32B-Instruct",
        family="chatml",
        description="Qwen2.5 32B Instruct (General - fast)",
        stop_token_ids=[151645, 151643, 151644],
        max_model_len=8192,
        max_position_embeddings=32768,
    ),
    "5": dict(
        hub_id="meta-llama/Llama-3.3-70B-Instruct",
        family="llama3_1",
        description="Llama 3.3 70B Instruct (General - needs 4 GPUs)",
        stop_token_ids=[128009, 128001, 128006],
        max_model_len=8192,
        max_position_embeddings=131072,
    ),
}

ARMORM = "RLHFlow/ArmoRM-Llama3-8B-v0.1"
# ArmoRM's architecture, implemented by the package itself (engine/armorm.py): its checkpoint's
# auto_map names remote code for it, which is never imported (no model's code ever is).
ARMORM_ARCHITECTURE = "LlamaForRewardModelWithGating"
# Where ArmoRM reads its gating input: the start of the last end-of-user-turn + assistant header.
ARMORM_GATING_PATTERN = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"

# The published chat template of each model above (chat_templates.py holds the text, once). The
# pipeline always reads the template of the tokenizer it loads; these are what the test doubles
# (magpie_hpc.fixtures) write, so the doubles render what the real models render.
CHAT_TEMPLATES: dict[str, str] = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": chat_templates.R1_DISTILL_TEMPLATE,
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": chat_templates.R1_DISTILL_TEMPLATE,
    "Qwen/Qwen2.5-Math-72B-Instruct": chat_templates.QWEN25_MATH_TEMPLATE,
    "Qwen/Qwen2.5-32B-Instruct": chat_templates.QWEN25_INSTRUCT_TEMPLATE,
    "meta-llama/Llama-3.3-70B-Instruct": chat_templates.LLAMA31_TEMPLATE,
    ARMORM: chat_templates.LLAMA3_TEMPLATE,
}
