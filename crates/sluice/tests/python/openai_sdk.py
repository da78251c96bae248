"""The official openai Python SDK against `sluice simulate`: chat (streaming and not),
completions (streaming and not) and embeddings. Exits non-zero on the first mismatch."""

import math
import sys

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url, api_key="sk-not-needed-by-the-simulator", max_retries=0)

chat = client.chat.completions.create(
    model="stable", messages=[{"role": "user", "content": "What is the capital of France?"}]
)
assert chat.choices[0].message.content == "Paris.", chat
assert chat.choices[0].finish_reason == "stop", chat
assert chat.usage.completion_tokens == 2 and chat.usage.total_tokens == chat.usage.prompt_tokens + 2, chat.usage

pieces, usage = [], None
stream = client.chat.completions.create(
    model="stable",
    messages=[{"role": "user", "content": "say hello to the world"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
assert "".join(pieces) == "say hello to the world", pieces
assert usage is not None and usage.completion_tokens == len(pieces), usage

completion = client.completions.create(model="stable", prompt="one two three four", max_tokens=2)
assert completion.choices[0].text == "one two", completion
assert completion.choices[0].finish_reason == "length", completion

text = "".join(
    c.choices[0].text
    for c in client.completions.create(model="stable", prompt="alpha beta", stream=True)
    if c.choices
)
assert text == "alpha beta", text

embeddings = client.embeddings.create(model="stable", input=["Paris is in France", "France holds Paris"])
a, b = (e.embedding for e in embeddings.data)
assert len(a) == 256 and len(b) == 256
cosine = sum(x * y for x, y in zip(a, b))
assert cosine > 0.5 and math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-4), cosine

models = [m.id for m in client.models.list()]
assert models == ["candidate", "stable"], models

try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model must be an error")
except openai.NotFoundError as error:
    assert "does not exist" in str(error), error

print("openai sdk: all checks passed")
