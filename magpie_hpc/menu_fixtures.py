"""Tokenizer-only doubles of the five menu models, written offline.

``write_menu_fixtures(DIR)`` writes one folder per menu key with the files a loader reads before any
weight: ``config.json`` (architectures, model_type, max_position_embeddings, bos/eos ids, vocab
size), ``tokenizer.json``, ``tokenizer_config.json`` (the real ``tokenizer_class``, bos/eos/pad and
the chat template, verbatim) and ``special_tokens_map.json``. ``write_hub_cache(HUB_CACHE)`` lays the
same folders out as the Hugging Face cache does (``models--org--name/snapshots/<rev>/``), which is
how compute nodes find a menu model: the tests load them exactly as launch does.

What is real: every added token at its real id (the vocabulary is padded with inert filler entries
so that, e.g., ``<｜end▁of▁sentence｜>`` of DeepSeek-R1-Distill-Qwen lands on 151643), which of them
are special, the chat template, the tokenizer class, the pre-tokenizer regex of the vocabulary
family, bos/eos/pad and the context length. What is not: the BPE merges (a few hundred, trained on a
small corpus), so ordinary text encodes to other ids than the real tokenizer's. No weights: these
folders check prompts, stop ids and context limits, never generation.

Provenance of the values is noted per model below. Sources are the models' published
``tokenizer_config.json`` / ``config.json`` as copied into public repositories (the hub itself is not
reachable here); a value marked "unverified" could not be found in such a copy and is the value the
model family is documented to use, to be checked against the real file on a machine with hub access.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["MenuFixture", "FIXTURES", "write_menu_fixtures", "write_hub_cache", "snapshot_revision"]

# ---------------------------------------------------------------------------
# Pre-tokenizer regexes (from the tokenizer.json of each vocabulary family)
# ---------------------------------------------------------------------------

# Llama-3 (tiktoken cl100k-style): digits in groups of up to three.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2 / Qwen2.5: single digits, NFC normalizer.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ---------------------------------------------------------------------------
# Chat templates, verbatim (Jinja source as stored in tokenizer_config.json, JSON-decoded)
# ---------------------------------------------------------------------------

# DeepSeek-R1-Distill-Qwen-32B and -Llama-70B share this template (the revision whose generation
# prompt opens a think block, "<｜Assistant｜><think>\n"). Source: copies of both models' current
# tokenizer_config.json (e.g. litellm's test of the Llama distill's config; a notebook listing the
# "Llama deepseek distil" and "Qwen Deepseek distil" templates side by side, identical).
R1_DISTILL_TEMPLATE = (
    r"{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    r"{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    r"{%- for message in messages %}{%- if message['role'] == 'system' %}"
    r"{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
    r"{{bos_token}}{{ns.system_prompt}}"
    r"{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}"
    r"{{'<｜User｜>' + message['content']}}{%- endif %}"
    r"{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    r"{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    r"{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>'"
    r" + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n'"
    r" + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}"
    r"{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name']"
    r" + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}"
    r"{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    r"{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    r"{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}"
    r"{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}"
    r"{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    r"{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    r"{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    r"{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    r"{%- set ns.is_output_first = false %}{%- else %}"
    r"{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
    r"{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    r"{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %}"
)


def _qwen25_template(default_system: str) -> str:
    """Qwen2.5's ChatML template with tool calling; the Math and the general Instruct models differ
    only in the default system text (used when no system message is given, and with tools)."""
    lines = [
        r"{%- if tools %}",
        r"    {{- '<|im_start|>system\n' }}",
        r"    {%- if messages[0]['role'] == 'system' %}",
        r"        {{- messages[0]['content'] }}",
        r"    {%- else %}",
        r"        {{- '" + default_system + r"' }}",
        r"    {%- endif %}",
        r'    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n'
        r'You are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}',
        r"    {%- for tool in tools %}",
        r'        {{- "\n" }}',
        r"        {{- tool | tojson }}",
        r"    {%- endfor %}",
        r'    {{- "\n</tools>\n\nFor each function call, return a json object with function name and '
        r"arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
        r'\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}',
        r"{%- else %}",
        r"    {%- if messages[0]['role'] == 'system' %}",
        r"        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}",
        r"    {%- else %}",
        r"        {{- '<|im_start|>system\n" + default_system + r"<|im_end|>\n' }}",
        r"    {%- endif %}",
        r"{%- endif %}",
        r"{%- for message in messages %}",
        r'    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
        r'(message.role == "assistant" and not message.tool_calls) %}',
        r"        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}",
        r'    {%- elif message.role == "assistant" %}',
        r"        {{- '<|im_start|>' + message.role }}",
        r"        {%- if message.content %}",
        r"            {{- '\n' + message.content }}",
        r"        {%- endif %}",
        r"        {%- for tool_call in message.tool_calls %}",
        r"            {%- if tool_call.function is defined %}",
        r"                {%- set tool_call = tool_call.function %}",
        r"            {%- endif %}",
        r"""            {{- '\n<tool_call>\n{"name": "' }}""",
        r"            {{- tool_call.name }}",
        r"""            {{- '", "arguments": ' }}""",
        r"            {{- tool_call.arguments | tojson }}",
        r"            {{- '}\n</tool_call>' }}",
        r"        {%- endfor %}",
        r"        {{- '<|im_end|>\n' }}",
        r'    {%- elif message.role == "tool" %}',
        r'        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}',
        r"            {{- '<|im_start|>user' }}",
        r"        {%- endif %}",
        r"        {{- '\n<tool_response>\n' }}",
        r"        {{- message.content }}",
        r"        {{- '\n</tool_response>' }}",
        r'        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}',
        r"            {{- '<|im_end|>\n' }}",
        r"        {%- endif %}",
        r"    {%- endif %}",
        r"{%- endfor %}",
        r"{%- if add_generation_prompt %}",
        r"    {{- '<|im_start|>assistant\n' }}",
        r"{%- endif %}",
    ]
    return "\n".join(lines) + "\n"


# Qwen2.5-Math-72B-Instruct: default system "Please reason step by step, and put your final answer
# within \boxed{}." Source: copies of the Qwen2.5-Math tokenizer_config.json (printed by
# transformers in a public notebook, and as JSON in several repositories).
QWEN25_MATH_TEMPLATE = _qwen25_template(r"Please reason step by step, and put your final answer within \\boxed{}.")
# Qwen2.5-32B-Instruct: the same template with the general default system prompt (unverified:
# no full copy of this model's file was found; the structure is Qwen2.5's shared one).
QWEN25_INSTRUCT_TEMPLATE = _qwen25_template("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")

# Llama-3.1/3.3-Instruct template. Every rendering opens a system block with the dated lines
# "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" (the date is a fixed default
# unless the caller passes `date_string`), followed by the system message, if any. Source: copies
# of Llama-3.1-Instruct's tokenizer_config.json; Llama-3.3-70B-Instruct ships the same template
# (the copies found are labelled 3.1; byte-for-byte identity with 3.3's file is unverified here).
LLAMA31_TEMPLATE = "\n".join([
    r"{{- bos_token }}",
    r"{%- if custom_tools is defined %}",
    r"    {%- set tools = custom_tools %}",
    r"{%- endif %}",
    r"{%- if not tools_in_user_message is defined %}",
    r"    {%- set tools_in_user_message = true %}",
    r"{%- endif %}",
    r"{%- if not date_string is defined %}",
    r'    {%- set date_string = "26 Jul 2024" %}',
    r"{%- endif %}",
    r"{%- if not tools is defined %}",
    r"    {%- set tools = none %}",
    r"{%- endif %}",
    r"",
    r"{#- This block extracts the system message, so we can slot it into the right place. #}",
    r"{%- if messages[0]['role'] == 'system' %}",
    r"    {%- set system_message = messages[0]['content']|trim %}",
    r"    {%- set messages = messages[1:] %}",
    r"{%- else %}",
    r'    {%- set system_message = "" %}',
    r"{%- endif %}",
    r"",
    r"{#- System message + builtin tools #}",
    r'{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}',
    r"{%- if builtin_tools is defined or tools is not none %}",
    r'    {{- "Environment: ipython\n" }}',
    r"{%- endif %}",
    r"{%- if builtin_tools is defined %}",
    r'''    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}''',
    r"{%- endif %}",
    r'{{- "Cutting Knowledge Date: December 2023\n" }}',
    r'{{- "Today Date: " + date_string + "\n\n" }}',
    r"{%- if tools is not none and not tools_in_user_message %}",
    r'    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}',
    r"""    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}""",
    r'    {{- "Do not use variables.\n\n" }}',
    r"    {%- for t in tools %}",
    r"        {{- t | tojson(indent=4) }}",
    r'        {{- "\n\n" }}',
    r"    {%- endfor %}",
    r"{%- endif %}",
    r"{{- system_message }}",
    r'{{- "<|eot_id|>" }}',
    r"",
    r"{#- Custom tools are passed in a user message with some extra guidance #}",
    r"{%- if tools_in_user_message and not tools is none %}",
    r"    {#- Extract the first user message so we can plug it in here #}",
    r"    {%- if messages | length != 0 %}",
    r"        {%- set first_user_message = messages[0]['content']|trim %}",
    r"        {%- set messages = messages[1:] %}",
    r"    {%- else %}",
    r'''        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}''',
    r"{%- endif %}",
    r"    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}",
    r'    {{- "Given the following functions, please respond with a JSON for a function call " }}',
    r'    {{- "with its proper arguments that best answers the given prompt.\n\n" }}',
    r"""    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}""",
    r'    {{- "Do not use variables.\n\n" }}',
    r"    {%- for t in tools %}",
    r"        {{- t | tojson(indent=4) }}",
    r'        {{- "\n\n" }}',
    r"    {%- endfor %}",
    r'    {{- first_user_message + "<|eot_id|>"}}',
    r"{%- endif %}",
    r"",
    r"{%- for message in messages %}",
    r"    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}",
    r"        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}",
    r"    {%- elif 'tool_calls' in message %}",
    r"        {%- if not message.tool_calls|length == 1 %}",
    r'            {{- raise_exception("This model only supports single tool-calls at once!") }}',
    r"        {%- endif %}",
    r"        {%- set tool_call = message.tool_calls[0].function %}",
    r"        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}",
    r"            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}",
    r'            {{- "<|python_tag|>" + tool_call.name + ".call(" }}',
    r"            {%- for arg_name, arg_val in tool_call.arguments | items %}",
    r"""                {{- arg_name + '="' + arg_val + '"' }}""",
    r"                {%- if not loop.last %}",
    r'                    {{- ", " }}',
    r"                {%- endif %}",
    r"                {%- endfor %}",
    r'            {{- ")" }}',
    r"        {%- else  %}",
    r"            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}",
    r"""            {{- '{"name": "' + tool_call.name + '", ' }}""",
    r"""            {{- '"parameters": ' }}""",
    r"            {{- tool_call.arguments | tojson }}",
    r'            {{- "}" }}',
    r"        {%- endif %}",
    r"        {%- if builtin_tools is defined %}",
    r"            {#- This means we're in ipython mode #}",
    r'            {{- "<|eom_id|>" }}',
    r"        {%- else %}",
    r'            {{- "<|eot_id|>" }}',
    r"        {%- endif %}",
    r'    {%- elif message.role == "tool" or message.role == "ipython" %}',
    r'        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}',
    r"        {%- if message.content is mapping or message.content is iterable %}",
    r"            {{- message.content | tojson }}",
    r"        {%- else %}",
    r"            {{- message.content }}",
    r"        {%- endif %}",
    r'        {{- "<|eot_id|>" }}',
    r"    {%- endif %}",
    r"{%- endfor %}",
    r"{%- if add_generation_prompt %}",
    r"    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
    r"{%- endif %}",
]) + "\n"

# ---------------------------------------------------------------------------
# Added tokens (id, content, special), in id order and contiguous from the first
# ---------------------------------------------------------------------------

QWEN2_BASE_VOCAB = 151643  # BPE entries 0..151642; added tokens start at <|endoftext|>
LLAMA3_BASE_VOCAB = 128000  # BPE entries 0..127999; 256 added tokens 128000..128255


def _qwen25_added() -> tuple[tuple[int, str, bool], ...]:
    # Qwen2.5 (Instruct and Math): the 22 added tokens of tokenizer.json; <tool_call> onwards are
    # not special. Source: Qwen2.5 tokenizer files as copied in public repositories.
    names = [
        ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
        ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
        ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
        ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
        ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
        ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
        ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ]
    return tuple((QWEN2_BASE_VOCAB + i, c, s) for i, (c, s) in enumerate(names))


def _r1_qwen_added() -> tuple[tuple[int, str, bool], ...]:
    # DeepSeek-R1-Distill-Qwen: Qwen's slots 151643-151649 renamed; <｜User｜>, <｜Assistant｜>, <|EOT|>,
    # <think>, </think> are *not* special (they survive skip_special_tokens). Source: the
    # added_tokens of DeepSeek-R1-Distill-Qwen-1.5B's tokenizer.json as quoted in Qualcomm's
    # ai-hub-models (the Qwen distills share one tokenizer).
    names = [
        ("<｜end▁of▁sentence｜>", True), ("<｜User｜>", False), ("<｜Assistant｜>", False),
        ("<｜begin▁of▁sentence｜>", True), ("<|EOT|>", False), ("<think>", False), ("</think>", False),
        ("<|quad_start|>", True), ("<|quad_end|>", True), ("<|vision_start|>", True),
        ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True),
        ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
        ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
        ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ]
    return tuple((QWEN2_BASE_VOCAB + i, c, s) for i, (c, s) in enumerate(names))


def _llama31_added(renamed: dict[int, tuple[str, bool]] | None = None) -> tuple[tuple[int, str, bool], ...]:
    # Llama-3.1/3.3: 256 special tokens; 128004 is the fine-tuning pad, 128008 <|eom_id|>,
    # 128010 <|python_tag|>, the rest reserved.
    fixed = {
        128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128002: "<|reserved_special_token_0|>",
        128003: "<|reserved_special_token_1|>", 128004: "<|finetune_right_pad_id|>",
        128005: "<|reserved_special_token_2|>", 128006: "<|start_header_id|>", 128007: "<|end_header_id|>",
        128008: "<|eom_id|>", 128009: "<|eot_id|>", 128010: "<|python_tag|>",
    }
    out = []
    for tid in range(LLAMA3_BASE_VOCAB, LLAMA3_BASE_VOCAB + 256):
        content, special = fixed.get(tid, f"<|reserved_special_token_{tid - 128011 + 3}|>"), True
        if renamed and tid in renamed:
            content, special = renamed[tid]
        out.append((tid, content, special))
    return tuple(out)


# DeepSeek-R1-Distill-Llama: the Llama-3 vocabulary with BOS/EOS renamed and reserved slots
# 128011-128015 reused. Ids of BOS/EOS/<｜User｜>/<｜Assistant｜> agree with the menu's stop ids
# (128012, 128001, 128011). Unverified (no copy of this tokenizer.json found): the ids of <think>
# (128013), </think> (128014) and <｜▁pad▁｜> (128015), and that the four chat markers are not special
# (as in the Qwen distill, whose flags are verified).
_R1_LLAMA_RENAMED = {
    128000: ("<｜begin▁of▁sentence｜>", True), 128001: ("<｜end▁of▁sentence｜>", True),
    128011: ("<｜User｜>", False), 128012: ("<｜Assistant｜>", False), 128013: ("<think>", False),
    128014: ("</think>", False), 128015: ("<｜▁pad▁｜>", True),
}


def _added_token(content: str, normalized: bool = True) -> dict:
    # tokenizer_config.json's serialised AddedToken (as in the DeepSeek distills' files).
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": normalized,
            "rstrip": False, "single_word": False}


@dataclass(frozen=True)
class MenuFixture:
    key: str
    hub_id: str
    config: dict  # config.json
    tokenizer_config: dict  # tokenizer_config.json without added_tokens_decoder / chat_template
    chat_template: str
    added: tuple[tuple[int, str, bool], ...]
    split: str
    nfc: bool
    bos_prefix: str | None  # tokenizer.json post-processor: prepend this token on encode
    added_tokens_decoder: bool = True  # whether tokenizer_config.json lists the added tokens
    special_tokens_map: dict = field(default_factory=dict)

    @property
    def dirname(self) -> str:
        return self.hub_id.replace("/", "--")


_R1_TOKENIZER_CONFIG = {
    # Both DeepSeek distills (source: copies of their tokenizer_config.json). add_bos_token is true
    # in the current files (the Llama distill's copy); an older copy of the Qwen distill's file has
    # false -- the pipeline never relies on it (prompts are encoded with add_special_tokens=False).
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": _added_token("<｜begin▁of▁sentence｜>"),
    "clean_up_tokenization_spaces": False,
    "eos_token": _added_token("<｜end▁of▁sentence｜>"),
    "legacy": True,
    "model_max_length": 16384,
    "pad_token": _added_token("<｜end▁of▁sentence｜>"),
    "sp_model_kwargs": {},
    "unk_token": None,
    # The real class name, though neither distill ships a sentencepiece model: transformers 5 maps
    # it to its own Llama tokenizer, which rebuilds the pipeline and loses spaces (load_tokenizer).
    "tokenizer_class": "LlamaTokenizerFast",
}

_QWEN25_TOKENIZER_CONFIG = {
    # Qwen2.5 Instruct/Math. model_max_length 131072 is the Qwen2.5 files' value (unverified for
    # the Math model: were it below 4,096, vLLM would cap max_model_len by it).
    "add_prefix_space": False,
    "additional_special_tokens": [
        "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
        "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
        "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    ],
    "bos_token": None,
    "clean_up_tokenization_spaces": False,
    "eos_token": "<|im_end|>",
    "errors": "replace",
    "model_max_length": 131072,
    "pad_token": "<|endoftext|>",
    "split_special_tokens": False,
    "tokenizer_class": "Qwen2Tokenizer",
    "unk_token": None,
}

_LLAMA33_TOKENIZER_CONFIG = {
    # Llama-3.3-70B-Instruct: no pad token; EOS of the tokenizer is <|eot_id|> (the end of a turn).
    "bos_token": "<|begin_of_text|>",
    "clean_up_tokenization_spaces": True,
    "eos_token": "<|eot_id|>",
    "model_input_names": ["input_ids", "attention_mask"],
    "model_max_length": 131072,
    "tokenizer_class": "PreTrainedTokenizerFast",
}

# Provenance in one place (the per-model comments say the same where it matters):
#   found in copies of the published files: both DeepSeek distill templates; the Qwen distill's
#     added tokens 151643-151664 and their special flags; the distills' tokenizer_config fields
#     (AddedToken bos/eos/pad, legacy, model_max_length 16384, LlamaTokenizerFast); the Qwen2.5-Math
#     template (printed from Qwen2.5-Math-1.5B; the 72B-Instruct is taken to share it); the
#     Llama-3.1 template; Qwen2.5-Math-72B-Instruct's 4,096 positions (issue 10's finding).
#   unverified, from the model families' documented values: every other config.json value
#     (context lengths 131072 / 32768 / 131072, bos/eos ids, layer sizes); Qwen2.5-32B-Instruct's
#     template text (the Math template with Qwen's default system prompt); the Qwen2.5 added-token
#     list and tokenizer_config fields; Llama-3.3's reserved token names and tokenizer_config
#     fields; the DeepSeek Llama distill's ids 128013-128015 and special flags; Llama-3.3 sharing
#     Llama-3.1's template byte for byte. The pipeline's checks rest on the verified part plus the
#     menu's stop ids, which the registry states independently.
_LLAMA3_ROPE = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192, "rope_type": "llama3"}

FIXTURES: dict[str, MenuFixture] = {
    # 1. deepseek-ai/DeepSeek-R1-Distill-Qwen-32B: Qwen2 architecture, 128K positions, BOS id of the
    # config is Qwen's 151643 (the tokenizer's <｜begin▁of▁sentence｜> is 151646), as in the real file.
    "1": MenuFixture(
        key="1", hub_id="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        config={"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "bos_token_id": 151643,
                "eos_token_id": 151643, "max_position_embeddings": 131072, "vocab_size": 152064,
                "hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 40,
                "num_key_value_heads": 8, "intermediate_size": 27648, "rope_theta": 1000000.0,
                "torch_dtype": "bfloat16"},
        tokenizer_config=_R1_TOKENIZER_CONFIG, chat_template=R1_DISTILL_TEMPLATE, added=_r1_qwen_added(),
        split=QWEN2_SPLIT, nfc=True, bos_prefix="<｜begin▁of▁sentence｜>", added_tokens_decoder=False,
        special_tokens_map={"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                            "pad_token": "<｜end▁of▁sentence｜>"},
    ),
    # 2. deepseek-ai/DeepSeek-R1-Distill-Llama-70B: Llama-3.3-70B architecture and vocabulary.
    "2": MenuFixture(
        key="2", hub_id="deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
        config={"architectures": ["LlamaForCausalLM"], "model_type": "llama", "bos_token_id": 128000,
                "eos_token_id": 128001, "max_position_embeddings": 131072, "vocab_size": 128256,
                "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
                "num_key_value_heads": 8, "intermediate_size": 28672, "rope_theta": 500000.0,
                "rope_scaling": _LLAMA3_ROPE, "torch_dtype": "bfloat16"},
        tokenizer_config=_R1_TOKENIZER_CONFIG, chat_template=R1_DISTILL_TEMPLATE,
        added=_llama31_added(_R1_LLAMA_RENAMED), split=LLAMA3_SPLIT, nfc=False,
        bos_prefix="<｜begin▁of▁sentence｜>", added_tokens_decoder=False,
        special_tokens_map={"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                            "pad_token": "<｜end▁of▁sentence｜>"},
    ),
    # 3. Qwen/Qwen2.5-Math-72B-Instruct: a 4,096-position context (the finding: vLLM refuses
    # max_model_len 8192). Layer sizes: the Qwen2.5-72B body, as hardware.MENU_ARCHITECTURES has it
    # (the planner reads them from config.json).
    "3": MenuFixture(
        key="3", hub_id="Qwen/Qwen2.5-Math-72B-Instruct",
        config={"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "bos_token_id": 151643,
                "eos_token_id": 151645, "max_position_embeddings": 4096, "vocab_size": 152064,
                "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
                "num_key_value_heads": 8, "intermediate_size": 29568, "rope_theta": 10000.0,
                "torch_dtype": "bfloat16"},
        tokenizer_config=_QWEN25_TOKENIZER_CONFIG, chat_template=QWEN25_MATH_TEMPLATE, added=_qwen25_added(),
        split=QWEN2_SPLIT, nfc=True, bos_prefix=None,
        special_tokens_map={"additional_special_tokens": _QWEN25_TOKENIZER_CONFIG["additional_special_tokens"],
                            "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    ),
    # 4. Qwen/Qwen2.5-32B-Instruct: 32,768 positions (YaRN extension is opt-in, not in config.json).
    "4": MenuFixture(
        key="4", hub_id="Qwen/Qwen2.5-32B-Instruct",
        config={"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "bos_token_id": 151643,
                "eos_token_id": 151645, "max_position_embeddings": 32768, "vocab_size": 152064,
                "hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 40,
                "num_key_value_heads": 8, "intermediate_size": 27648, "rope_theta": 1000000.0,
                "torch_dtype": "bfloat16"},
        tokenizer_config=_QWEN25_TOKENIZER_CONFIG, chat_template=QWEN25_INSTRUCT_TEMPLATE, added=_qwen25_added(),
        split=QWEN2_SPLIT, nfc=True, bos_prefix=None,
        special_tokens_map={"additional_special_tokens": _QWEN25_TOKENIZER_CONFIG["additional_special_tokens"],
                            "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    ),
    # 5. meta-llama/Llama-3.3-70B-Instruct: three EOS ids in config.json (end_of_text, eom, eot).
    "5": MenuFixture(
        key="5", hub_id="meta-llama/Llama-3.3-70B-Instruct",
        config={"architectures": ["LlamaForCausalLM"], "model_type": "llama", "bos_token_id": 128000,
                "eos_token_id": [128001, 128008, 128009], "max_position_embeddings": 131072,
                "vocab_size": 128256, "hidden_size": 8192, "num_hidden_layers": 80,
                "num_attention_heads": 64, "num_key_value_heads": 8, "intermediate_size": 28672,
                "rope_theta": 500000.0, "rope_scaling": _LLAMA3_ROPE, "torch_dtype": "bfloat16"},
        tokenizer_config=_LLAMA33_TOKENIZER_CONFIG, chat_template=LLAMA31_TEMPLATE, added=_llama31_added(),
        split=LLAMA3_SPLIT, nfc=False, bos_prefix="<|begin_of_text|>",
        special_tokens_map={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    ),
}

# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

_CORPUS = """\
Let $f(x) = x^2 + 3x - 4$. Find all real roots of $f$ and compute $f(2)$.
Prove that for every prime $p > 3$, $p^2 - 1$ is divisible by $24$.
The integral $\\int_0^1 x \\ln x \\, dx = -\\frac{1}{4}$, so the answer is $\\boxed{-\\frac{1}{4}}$.
Consider the group $G = \\mathbb{Z}/6\\mathbb{Z}$. How many subgroups does it have?
A fair die is rolled twice. What is the probability that the sum is at least 10?
Let $A$ be a $3 \\times 3$ matrix with eigenvalues 1, 2 and 3. Compute $\\det(A^2)$.
In triangle $ABC$, the angle bisector from $A$ meets $BC$ at $D$; show that $BD/DC = AB/AC$.
We have $\\sum_{n=1}^{\\infty} \\frac{1}{n^2} = \\frac{\\pi^2}{6}$, hence the series converges.
Step 1: expand the product. Step 2: collect terms. Step 3: solve for x.
The number of spanning trees of the complete graph $K_n$ is $n^{n-2}$ by Cayley's formula.
"""


@lru_cache(maxsize=4)
def _trained_bpe(split: str, nfc: bool) -> str:
    """A byte-level BPE over a small math corpus with the family's split regex (deterministic)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((_CORPUS * 4).splitlines(keepends=True), trainer=trainer)
    return tok.to_str()


def _tokenizer_json(fx: MenuFixture) -> str:
    return _tokenizer_json_for(fx.split, fx.nfc, fx.added, fx.bos_prefix)


@lru_cache(maxsize=8)  # the two Qwen2.5 models share one tokenizer.json
def _tokenizer_json_for(split: str, nfc: bool, added: tuple, bos_prefix: str | None) -> str:
    """The trained BPE, padded with inert filler entries up to the first added id, then the added
    tokens at their real ids and the family's post-processor."""
    from tokenizers import Tokenizer

    fx = MenuFixture(key="", hub_id="", config={}, tokenizer_config={}, chat_template="", added=added,
                     split=split, nfc=nfc, bos_prefix=bos_prefix)
    data = json.loads(_trained_bpe(fx.split, fx.nfc))
    vocab: dict[str, int] = data["model"]["vocab"]
    first = fx.added[0][0]
    # Fillers are never produced by encoding: no merge builds them, and the split regex always cuts
    # "<", letters and digits apart before the BPE sees a word.
    vocab.update({f"<filler{i}>": i for i in range(len(vocab), first)})
    data["added_tokens"] = [
        {"id": tid, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": special}
        for tid, content, special in fx.added
    ]
    bos = next((tid for tid, content, _ in fx.added if content == fx.bos_prefix), None)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    if bos is None:
        data["post_processor"] = byte_level
    else:
        data["post_processor"] = {"type": "Sequence", "processors": [byte_level, {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": fx.bos_prefix, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": fx.bos_prefix, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": fx.bos_prefix, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {fx.bos_prefix: {"id": fx.bos_prefix, "ids": [bos], "tokens": [fx.bos_prefix]}},
        }]}
    text = json.dumps(data, ensure_ascii=False)
    tok = Tokenizer.from_str(text)
    for tid, content, _ in fx.added:  # a wrong id here would make every later check meaningless
        if tok.token_to_id(content) != tid:
            raise RuntimeError(f"menu fixture: {content} got id {tok.token_to_id(content)}, not {tid}")
    return text


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_folder(folder: Path, fx: MenuFixture) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(_tokenizer_json(fx), encoding="utf-8")
    tcfg = dict(fx.tokenizer_config)
    if fx.added_tokens_decoder:
        tcfg["added_tokens_decoder"] = {
            str(tid): {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                       "single_word": False, "special": special}
            for tid, content, special in fx.added
        }
    tcfg["chat_template"] = fx.chat_template
    _write_json(folder / "tokenizer_config.json", dict(sorted(tcfg.items())))
    _write_json(folder / "special_tokens_map.json", fx.special_tokens_map)
    _write_json(folder / "config.json", {**fx.config, "transformers_version": "4.46.0"})


def write_menu_fixtures(out_dir: Path, keys: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Plain model folders (DIR/org--name), one per menu key; rewritten on every call."""
    out_dir = Path(out_dir)
    paths = {}
    for key in keys or tuple(FIXTURES):
        fx = FIXTURES[key]
        folder = out_dir / fx.dirname
        if folder.exists():
            shutil.rmtree(folder)
        _write_folder(folder, fx)
        paths[key] = folder
    return paths


def snapshot_revision(hub_id: str) -> str:
    """A stable 40-hex revision for the fixture's snapshot folder."""
    return hashlib.sha1(f"magpie-hpc menu fixture {hub_id}".encode()).hexdigest()


def write_hub_cache(hub_cache: Path, keys: tuple[str, ...] | None = None) -> dict[str, Path]:
    """The Hugging Face cache layout (HUB_CACHE/models--org--name/snapshots/REV/ + refs/main), as
    `huggingface-cli download` leaves it; returns the snapshot folder of each key."""
    hub_cache = Path(hub_cache)
    paths = {}
    for key in keys or tuple(FIXTURES):
        fx = FIXTURES[key]
        repo = hub_cache / ("models--" + fx.hub_id.replace("/", "--"))
        rev = snapshot_revision(fx.hub_id)
        snap = repo / "snapshots" / rev
        if repo.exists():
            shutil.rmtree(repo)
        _write_folder(snap, fx)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(rev, encoding="utf-8")
        paths[key] = snap
    return paths
