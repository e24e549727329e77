"""Career recommendation: features, bundles, training and the recommender service."""
