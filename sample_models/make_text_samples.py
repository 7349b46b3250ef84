"""Build the sample transformer: a small intent classifier for a voice assistant on a Pi, and its sentences.

Offline and deterministic. The sentences are English requests to a home assistant, written as templates
with slots (rooms, times, songs, cities, ...) and polite endings, expanded and dealt with a seeded generator:
eight intents, each with 400 training, 40 calibration and 80 labelled evaluation sentences, no sentence in two
splits. Half of each intent's evaluation sentences come from a template held out of training (phrasings the
model never saw), so the accuracy measures generalisation rather than recall. A WordPiece tokenizer is
trained on the training sentences with the `tokenizers` library (lower-cased, [CLS] ... [SEP], padded with
[PAD] = 0) and the encoder on their token ids:

  token embedding (64) + a convolutional position encoding (Conv1D, kernel 3: order without a custom layer)
  4 x [MultiHeadAttention (4 heads x 16) + residual + LayerNorm, Dense 128 GELU -> Dense 64 + residual +
  LayerNorm]  (post-LN, as BERT), mean over tokens, Dense softmax over the intents.

Writes, overwriting:
  intent_encoder.keras    Keras 3, input `input_ids` int32 [N, 24]
  intent_states.keras     the same encoder cut after its last block: token states [N, 24, 64], a sentence
                          encoder as sentence-transformers exports one (the bundle pools them)
  intent_tokenizer.json   the tokenizer (JSON: vocabulary and rules)
  intent_calib.txt        calibration sentences, one a line
  intent_eval.txt         evaluation sentences, `LABEL<TAB>sentence`

Run from the repository root:  .venv/bin/python sample_models/make_text_samples.py
(`--states-only`: just re-cut intent_states.keras from the committed intent_encoder.keras, no training)
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np

OUT_DIR = Path(__file__).resolve().parent
SEED = 2026
LENGTH = 24
WIDTH, HEADS, BLOCKS, FFN = 64, 4, 4, 128
PER_INTENT = {"train": 400, "calib": 40, "eval": 80}  # sentences of each intent in each split
HELD_OUT = 1  # this template of each intent is only in the evaluation split

ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "hallway", "garage", "office", "kids room", "porch"]
TIMES = ["five minutes", "ten minutes", "half an hour", "an hour", "twenty minutes", "ninety seconds", "two hours",
         "fifteen minutes", "three minutes", "forty five minutes"]
CLOCK = ["six", "six thirty", "seven", "seven fifteen", "eight", "nine", "ten", "noon", "midnight", "five am"]
SONGS = ["some jazz", "the beatles", "my workout playlist", "classical music", "something relaxing", "the radio",
         "lofi beats", "the news podcast", "my favourites", "rock music", "a lullaby"]
CITIES = ["london", "paris", "berlin", "tokyo", "new york", "madrid", "oslo", "cape town", "sydney", "toronto"]
DAYS = ["today", "tomorrow", "tonight", "this weekend", "on monday", "on friday", "this afternoon", "later"]
ITEMS = ["milk", "eggs", "bread", "coffee", "apples", "rice", "butter", "tomatoes", "cheese", "dish soap"]
LEVELS = ["up", "down", "a bit louder", "a bit quieter", "to fifty percent", "to maximum", "way down"]
POLITE = ["", "please ", "could you ", "can you ", "hey ", "would you "]
ENDINGS = ["", " thanks", " right now", " for me", " now", " if you can"]

INTENTS: dict[str, list[str]] = {
    "lights_on": ["{p}turn on the lights in the {room}", "{p}switch the {room} lights on", "lights on in the {room}",
                  "{p}make the {room} brighter", "it is too dark in the {room}", "{p}light up the {room}"],
    "lights_off": ["{p}turn off the lights in the {room}", "{p}switch the {room} lights off",
                   "lights off in the {room}", "{p}kill the lights in the {room}", "{p}make the {room} dark",
                   "nobody is in the {room} turn the lights off"],
    "set_timer": ["{p}set a timer for {time}", "timer {time}", "{p}start a {time} timer",
                  "{p}remind me in {time}", "{p}count down {time}", "wake me in {time}"],
    "set_alarm": ["{p}set an alarm for {clock}", "{p}wake me up at {clock}", "alarm at {clock} {day}",
                  "{p}get me up at {clock} {day}", "i need to be up at {clock}", "{p}set my alarm to {clock}"],
    "play_music": ["{p}play {song}", "{p}put on {song}", "i want to hear {song}", "{p}start playing {song}",
                   "music please {song}", "{p}play {song} in the {room}"],
    "volume": ["{p}turn the volume {level}", "volume {level}", "{p}turn it {level}", "{p}make the music {level}",
               "{p}set the volume {level}", "{p}turn the {room} speaker {level}"],
    "weather": ["what is the weather {day}", "{p}tell me the weather in {city}", "will it rain {day}",
                "how cold is it in {city} {day}", "do i need an umbrella {day}", "is it sunny in {city}"],
    "shopping_list": ["{p}add {item} to my shopping list", "put {item} on the list", "we are out of {item}",
                      "{p}remember to buy {item}", "{p}add {item} and {item2} to the list",
                      "shopping list {item}"],
}
SLOTS = {"room": ROOMS, "time": TIMES, "clock": CLOCK, "song": SONGS, "city": CITIES, "day": DAYS, "item": ITEMS,
         "item2": ITEMS, "level": LEVELS, "p": POLITE}


def _expand(template: str) -> list[str]:
    """Every sentence of one template: its slots filled every way, each with every polite ending."""
    names = [n for n in SLOTS if "{" + n + "}" in template]
    out = []
    for values in itertools.product(*(SLOTS[n] for n in names)):
        text = template.format(**dict(zip(names, values, strict=True)))
        out += [" ".join((text + ending).split()) for ending in ENDINGS]
    return sorted(set(out))


def sentences(rng: np.random.Generator) -> dict[str, list[tuple[int, str]]]:
    """Per intent (balanced): train and calibration from all templates but one, evaluation half from unseen
    sentences of those templates and half from the held-out template (phrasings never trained on, so the
    accuracy is not trivially 100 %); no sentence in two splits."""
    splits: dict[str, list[tuple[int, str]]] = {name: [] for name in PER_INTENT}
    for label, templates in enumerate(INTENTS.values()):
        held_out = _expand(templates[HELD_OUT])
        pool = _dealt(rng, [_expand(t) for i, t in enumerate(templates) if i != HELD_OUT])
        wanted = PER_INTENT["calib"] + PER_INTENT["eval"] // 2 + PER_INTENT["train"]
        assert len(pool) >= wanted, (label, len(pool))
        calib, rest = pool[:PER_INTENT["calib"]], pool[PER_INTENT["calib"]:]
        unseen, train = rest[:PER_INTENT["eval"] // 2], rest[PER_INTENT["eval"] // 2:][:PER_INTENT["train"]]
        novel = [held_out[i] for i in rng.permutation(len(held_out))[:PER_INTENT["eval"] // 2]]
        for name, chosen in (("train", train), ("calib", calib), ("eval", unseen + novel)):
            splits[name] += [(label, text) for text in chosen]
    return {name: [rows[i] for i in rng.permutation(len(rows))] for name, rows in splits.items()}


def _dealt(rng: np.random.Generator, per_template: list[list[str]]) -> list[str]:
    """The templates' sentences interleaved (each template shuffled), so any prefix is balanced over them."""
    shuffled = [[t[i] for i in rng.permutation(len(t))] for t in per_template]
    out, seen = [], set()
    for row in itertools.zip_longest(*shuffled):
        for text in row:
            if text is not None and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def tokenizer(train: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok.train_from_iterator(train, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                 ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.enable_padding(length=LENGTH, pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    tok.enable_truncation(LENGTH)
    return tok


def encoder(keras, vocab: int, classes: int):
    layers = keras.layers
    ids = keras.Input((LENGTH,), dtype="int32", name="input_ids")
    x = layers.Embedding(vocab, WIDTH, name="token_embedding")(ids)
    x = layers.LayerNormalization(name="embedding_norm")(x + layers.Conv1D(WIDTH, 3, padding="same",
                                                                           name="position_conv")(x))
    for k in range(BLOCKS):
        attended = layers.MultiHeadAttention(HEADS, WIDTH // HEADS, name=f"block{k}_attention")(x, x)
        x = layers.LayerNormalization(name=f"block{k}_attention_norm")(x + attended)
        hidden = layers.Dense(FFN, activation="gelu", name=f"block{k}_ffn_in")(x)
        projected = layers.Dense(WIDTH, name=f"block{k}_ffn_out")(hidden)
        x = layers.LayerNormalization(name=f"block{k}_ffn_norm")(x + projected)
    pooled = layers.GlobalAveragePooling1D(name="mean_pool")(x)
    return keras.Model(ids, layers.Dense(classes, activation="softmax", name="intent")(pooled), name="intent_encoder")


def token_states(keras, model):
    """The encoder without its pooling and classifier: what a sentence encoder's ONNX export outputs."""
    return keras.Model(model.input, model.get_layer(f"block{BLOCKS - 1}_ffn_norm").output, name="intent_states")


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    if sys.argv[1:] == ["--states-only"]:
        source = keras.models.load_model(OUT_DIR / "intent_encoder.keras")
        token_states(keras, source).save(OUT_DIR / "intent_states.keras")
        return

    rng = np.random.default_rng(SEED)
    splits = sentences(rng)
    tok = tokenizer([s for _, s in splits["train"]])
    tok.save(str(OUT_DIR / "intent_tokenizer.json"))

    def ids(split: str) -> tuple[np.ndarray, np.ndarray]:
        encoded = tok.encode_batch([s for _, s in splits[split]])
        return np.array([e.ids for e in encoded], np.int32), np.array([y for y, _ in splits[split]], np.int64)

    keras.utils.set_random_seed(SEED)
    model = encoder(keras, tok.get_vocab_size(), len(INTENTS))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = ids("train")
    model.fit(x, y, batch_size=64, epochs=6, verbose=2, shuffle=True)
    ex, ey = ids("eval")
    accuracy = float(np.mean(model.predict(ex, verbose=0).argmax(1) == ey))
    print(f"evaluation accuracy {accuracy:.4f} on {len(ey)} sentences; params {model.count_params():,}")
    model.save(OUT_DIR / "intent_encoder.keras")
    token_states(keras, model).save(OUT_DIR / "intent_states.keras")
    (OUT_DIR / "intent_calib.txt").write_text("".join(f"{s}\n" for _, s in splits["calib"]))
    (OUT_DIR / "intent_eval.txt").write_text("".join(f"{y}\t{s}\n" for y, s in splits["eval"]))


if __name__ == "__main__":
    main()
