"""The published chat templates of the models the pipeline names (data, no logic).

One copy of each, verbatim as the model's tokenizer_config.json stores it (JSON-decoded): the
registry says which model has which, and the test doubles (magpie_hpc.fixtures) write these same
strings, so a prompt that renders right on a double renders right on the real model.
"""

from __future__ import annotations

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
LLAMA31_TEMPLATE = (
    "\n".join(
        [
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
            r"""    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}""",
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
            r"""        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}""",
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
        ]
    )
    + "\n"
)


# Meta-Llama-3-Instruct's template, verbatim: what RLHFlow/ArmoRM-Llama3-8B-v0.1 ships (Llama-3.0,
# no system-block date lines).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
