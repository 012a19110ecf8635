//! `qairt sweep`: a grid of quantization configurations, built with every cached stage reused, ranked.
