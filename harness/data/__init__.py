"""The IMDB reviews: where they come from (`source`), tokenised and encoded for sentiment
classification (`classification`), and cut into next-word windows (`language_model`)."""
