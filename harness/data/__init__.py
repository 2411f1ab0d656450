"""The IMDB reviews: where they come from (`source`), tokenised once and cached (`corpus`), and
prepared for each task: padded rows for sentiment classification (`classification`) and
next-word windows (`language_model`)."""
