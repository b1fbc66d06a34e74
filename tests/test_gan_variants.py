"""GAN options against their formulas: losses, projection, auxiliary head, conditional BN,
spectral norm, DiffAugment/ADA, EMA, transitional conditioning; and the variants' step runs."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan.models import cdcgan, conditioning
from braingan.train import augment, gan, losses
from tests.test_train_gan import _batch, tiny_config, trainer_for

RNG = np.random.default_rng(0)


def test_losses_match_their_formulas():
  real = jnp.asarray(RNG.normal(size=16), jnp.float32)
  fake = jnp.asarray(RNG.normal(size=16), jnp.float32)
  hinge = losses.get('hinge')
  np.testing.assert_allclose(hinge.discriminator(real, fake),
                             np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake)),
                             rtol=1e-6)
  np.testing.assert_allclose(hinge.generator(fake), -np.mean(fake), rtol=1e-6)
  bce = losses.get('bce')
  sig = lambda x: 1 / (1 + np.exp(-np.asarray(x, np.float64)))  # noqa: E731
  want_d = 0.5 * (-np.mean(np.log(sig(real))) - np.mean(np.log(1 - sig(fake))))
  np.testing.assert_allclose(bce.discriminator(real, fake), want_d, rtol=1e-5)
  np.testing.assert_allclose(bce.generator(fake), -np.mean(np.log(sig(fake))), rtol=1e-5)
  with pytest.raises(ValueError, match='config.loss'):
    losses.get('wgan')


def test_auxiliary_cross_entropy_by_hand():
  logits = RNG.normal(size=(6, 4)).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 0, 2])
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  np.testing.assert_allclose(losses.class_cross_entropy(jnp.asarray(logits), labels),
                             -np.mean(logp[np.arange(6), labels]), rtol=1e-5)


def test_twin_auxiliary_class_losses_by_hand():
  """TAC-GAN: D adds the twin head's cross-entropy on fakes, G subtracts it; without a twin
  both are AC-GAN's (the auxiliary head alone)."""
  def ce(logits, labels):
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -np.mean(logp[np.arange(len(labels)), labels])
  real_cls, fake_cls = RNG.normal(size=(2, 6, 8)).astype(np.float32)
  labels, fake_labels = np.array([0, 1, 2, 3, 0, 2]), np.array([3, 3, 1, 0, 2, 1])
  d = losses.discriminator_class_loss(real_cls, fake_cls, labels, fake_labels, twin=True)
  np.testing.assert_allclose(d, ce(real_cls[:, :4], labels) + ce(fake_cls[:, 4:], fake_labels),
                             rtol=1e-5)
  g = losses.generator_class_loss(fake_cls, fake_labels, twin=True)
  np.testing.assert_allclose(g, ce(fake_cls[:, :4], fake_labels) - ce(fake_cls[:, 4:], fake_labels),
                             rtol=1e-5)
  plain = real_cls[:, :4]
  np.testing.assert_allclose(losses.discriminator_class_loss(plain, plain, labels, fake_labels,
                                                             twin=False), ce(plain, labels),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.generator_class_loss(plain, fake_labels, twin=False),
                             ce(plain, fake_labels), rtol=1e-5)


def test_mode_seeking_term_by_hand():
  a, b = RNG.normal(size=(2, 4, 8, 8, 1)).astype(np.float32)
  za, zb = RNG.normal(size=(2, 4, 16)).astype(np.float32)
  want = 1.0 / (np.mean(np.abs(a - b)) / np.mean(np.abs(za - zb)) + 1e-5)
  np.testing.assert_allclose(losses.mode_seeking(a, b, za, zb), want, rtol=1e-5)
  # Identical images (a collapsed class) cost the most; spreading them apart lowers the term.
  assert losses.mode_seeking(a, a, za, zb) > 1e4 > losses.mode_seeking(a, 2 * b, za, zb)


def test_mode_seeking_enters_only_the_generator_loss_linearly():
  """From one state and batch, D's update does not depend on the weight; G's loss grows by the
  (positive) term when the weight goes from 1 to 2."""
  results = []
  for weight in (1.0, 2.0):
    config = tiny_config(mode_seeking=weight)
    trainer = trainer_for(config)
    _, metrics = trainer.step(trainer.initial_state(), _batch(config, 8, seed=0))
    results.append((float(metrics['d_loss']), float(metrics['g_loss'])))
  (d1, g1), (d2, g2) = results
  assert d1 == pytest.approx(d2, rel=1e-6)
  assert np.isfinite(g2) and g2 - g1 > 0   # the term: 1 / (image spread / latent spread)

def test_lecam_term_by_hand():
  real, fake = RNG.normal(size=(2, 16)).astype(np.float32)
  want = np.mean(np.maximum(real - 0.3, 0) ** 2) + np.mean(np.maximum(-0.2 - fake, 0) ** 2)
  np.testing.assert_allclose(losses.lecam(real, fake, -0.2, 0.3), want, rtol=1e-5)
  # Scores on the right side of the other set's anchor cost nothing.
  assert float(losses.lecam(jnp.full(4, -1.0), jnp.full(4, 1.0), 0.0, 0.0)) == 0.0


def test_lecam_enters_the_discriminator_loss_with_its_anchors():
  """After the first step the anchors hold (1 - decay) x D's mean logit on the real and the
  fake batch (bias-corrected: the means themselves), the term is LeCam's formula on D's logits
  computed here, and D's loss grows by weight x term."""
  decay, weight = 0.5, 2.0
  config = tiny_config(lecam_decay=decay)
  recipe = gan.GANRecipe(config)
  state = recipe.init_state()
  assert state.lecam_anchors == {}    # off: the state is what runs before LeCam stored
  g, d = state.generator, state.discriminator
  batch = _batch(config, 8, seed=0)
  z, _ = gan.step_randomness(g, 8, config.model.latent_dim)
  fake = recipe.generator.apply({'params': g.params, 'batch_stats': g.batch_stats}, z,
                                batch['label'], train=False)
  score = lambda x: np.asarray(recipe.discriminator.apply(   # noqa: E731
      {'params': d.params, 'batch_stats': d.batch_stats}, x, batch['label'], train=False)[0])
  real_logits, fake_logits = score(batch['image']), score(fake)
  want = losses.lecam(real_logits, fake_logits, real_logits.mean(), fake_logits.mean())
  results = {}
  for w in (0.0, weight):
    trainer = trainer_for(tiny_config(lecam_decay=decay, lecam_weight=w))
    new_state, metrics = trainer.step(trainer.initial_state(), batch)
    results[w] = metrics
  assert set(new_state.lecam_anchors) == {'real', 'fake'} and 'lecam' not in results[0.0]
  np.testing.assert_allclose(new_state.lecam_anchors['real'], (1 - decay) * real_logits.mean(),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new_state.lecam_anchors['fake'], (1 - decay) * fake_logits.mean(),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(results[weight]['lecam'], want, rtol=1e-4, atol=1e-6)
  assert float(want) > 0
  np.testing.assert_allclose(results[weight]['d_loss'] - results[0.0]['d_loss'],
                             weight * float(want), rtol=1e-4, atol=1e-6)


def _discriminator(parts, **kwargs):
  return cdcgan.Discriminator(image_size=32, widths=(8, 8, 8, 8, 8), embed_dim=4,
                              conditioning=conditioning.discriminator_parts(parts), **kwargs)


def test_projection_logit_equals_its_formula():
  d = _discriminator('projection')
  x = jnp.asarray(RNG.uniform(-1, 1, (3, 32, 32, 1)), jnp.float32)
  y = jnp.array([0, 2, 3])
  variables = d.init(jax.random.key(0), x, y, train=False)
  features = []

  def record(next_fun, args, kwargs, context):   # phi(x): what Dense_0 sees
    if context.module.name == 'Dense_0':
      features.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    logits, class_logits = d.apply(variables, x, y, train=False)
  assert class_logits is None and 'LabelPlane_0' not in variables['params']
  phi = np.asarray(features[0])
  p = variables['params']
  psi = phi @ np.asarray(p['Dense_0']['kernel'])[:, 0] + np.asarray(p['Dense_0']['bias'])[0]
  embed = np.asarray(p['projection']['embedding'])[np.asarray(y)]
  np.testing.assert_allclose(logits, psi + np.sum(embed * phi, -1), rtol=1e-4, atol=1e-5)
  # Half-way through a transition the label's term is halved.
  half, _ = d.apply(variables, x, y, train=False, cond_scale=0.5)
  np.testing.assert_allclose(half, psi + 0.5 * np.sum(embed * phi, -1), rtol=1e-4, atol=1e-5)


def test_auxiliary_head_gives_class_logits():
  d = _discriminator('projection+auxiliary')
  x = jnp.zeros((2, 32, 32, 1))
  variables = d.init(jax.random.key(0), x, jnp.array([0, 1]), train=False)
  logits, class_logits = d.apply(variables, x, jnp.array([0, 1]), train=False)
  assert logits.shape == (2,) and class_logits.shape == (2, 4)
  with pytest.raises(ValueError, match='config.model.d_conditioning'):
    conditioning.discriminator_parts('projection+magic')
  with pytest.raises(ValueError, match="'twin' plays against the auxiliary head"):
    conditioning.discriminator_parts('projection+twin')
  twin = _discriminator('projection+auxiliary+twin')
  variables = twin.init(jax.random.key(0), x, jnp.array([0, 1]), train=False)
  _, class_logits = twin.apply(variables, x, jnp.array([0, 1]), train=False)
  assert class_logits.shape == (2, 8) and 'twin' in variables['params']


def test_conditional_batchnorm_is_a_per_class_affine():
  cbn = conditioning.ConditionalBatchNorm(num_classes=4, use_running_average=True, epsilon=0.0)
  x = jnp.asarray(RNG.normal(size=(4, 2, 2, 3)), jnp.float32)
  labels = jnp.array([0, 1, 2, 3])
  variables = cbn.init(jax.random.key(0), x, labels)
  np.testing.assert_allclose(cbn.apply(variables, x, labels), x, atol=1e-6)   # starts as BN
  gain = RNG.normal(size=(4, 3)).astype(np.float32)
  bias = RNG.normal(size=(4, 3)).astype(np.float32)
  params = {'gain': {'embedding': gain}, 'bias': {'embedding': bias}}
  out = cbn.apply({**variables, 'params': params}, x, labels)
  want = np.asarray(x) * (1 + gain[:, None, None, :]) + bias[:, None, None, :]
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_spectral_norm_estimate_matches_svd():
  d = _discriminator('concat', spectral_norm=True, norm='none')
  x = jnp.asarray(RNG.uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  y = jnp.array([0, 1])
  variables = d.init(jax.random.key(0), x, y, train=False)
  stats = variables['batch_stats']
  for _ in range(30):   # power iterations, one per training call
    _, new = d.apply({**variables, 'batch_stats': stats}, x, y, train=False, update_stats=True,
                     mutable=['batch_stats'])
    stats = new['batch_stats']
  kernel = np.asarray(variables['params']['conv1']['kernel'])
  top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
  np.testing.assert_allclose(stats['conv1_sn']['conv1/kernel/sigma'], top, rtol=1e-3)


def test_augmentation_pairs_gradients_identity_and_flip_direction():
  x = jnp.asarray(RNG.uniform(-1, 1, (4, 16, 16, 1)), jnp.float32)
  ops = augment.parse_policy('translation,cutout,brightness,contrast,flip')
  key = jax.random.key(3)
  a = augment.augment(x, key, ops)
  np.testing.assert_array_equal(a, augment.augment(x, key, ops))      # same key: same params
  fake = x[::-1]
  paired = augment.augment(fake, key, ('translation',))
  shifted = augment.augment(x, key, ('translation',))
  # Same shifts on a different pair of batches: the mask of filled (-1) pixels is identical.
  np.testing.assert_array_equal(paired == -1, shifted == -1)
  assert not np.allclose(a, x)
  np.testing.assert_array_equal(augment.augment(x, key, ops, p=0.0), x)   # strength 0
  grad = jax.grad(lambda im: jnp.sum(augment.augment(im, key, ops) ** 2))(x)
  assert np.abs(np.asarray(grad)).sum() > 0                                # gradient flows
  flipped = augment.augment(x, key, ('flip',), p=1.0)
  np.testing.assert_array_equal(flipped, x[:, :, ::-1])                     # left-right only
  classic = augment.classic(x, key)
  assert classic.shape == x.shape and float(classic.min()) >= -1 and float(classic.max()) <= 1
  with pytest.raises(ValueError, match='config.diffaug.policy'):
    augment.parse_policy('translation,hue')


def test_ada_moves_probability_the_right_way():
  p = jnp.float32(0.3)
  confident = jnp.full(32, 5.0)      # D says "real" to every real image: overfitting
  unsure = jnp.full(32, -1.0)
  assert float(augment.ada_update(p, confident, 0.6, 1000.0)) == pytest.approx(0.3 + 0.032)
  assert float(augment.ada_update(p, unsure, 0.6, 1000.0)) == pytest.approx(0.3 - 0.032)
  assert float(augment.ada_update(jnp.float32(0.0), unsure, 0.6, 1000.0)) == 0.0


def test_ema_update_matches_its_formula_and_transition_scale():
  config = tiny_config(**{'ema.decay': 0.9, 'ema.start_step': 2})
  recipe = gan.GANRecipe(config)
  ema = {'w': jnp.full(3, 1.0)}
  params = {'w': jnp.full(3, 3.0)}
  np.testing.assert_allclose(recipe._ema(ema, params, jnp.int32(2))['w'], 3.0)   # copy
  np.testing.assert_allclose(recipe._ema(ema, params, jnp.int32(5))['w'], 0.9 * 1 + 0.1 * 3)
  config.transition_steps = 100
  assert float(gan.condition_scale(config, 25)) == pytest.approx(0.25)
  assert float(gan.condition_scale(config, 500)) == 1.0


def test_linear_learning_rate_decay_over_the_last_epochs():
  assert gan.GANRecipe(tiny_config()).hooks() == []          # GANForge: constant rates
  config = tiny_config(**{'epochs': 5, 'lr_decay_after_epoch': 2,
                          'optimizer.d_learning_rate': 4e-4})
  recipe = gan.GANRecipe(config)
  (hook,) = recipe.hooks()

  def rates_by_epoch(hook, first_epoch, hparams):
    """The loop's protocol: train epoch n with hparams, then update(record of n)."""
    out = {}
    for n in range(first_epoch, 6):
      out[n] = dict(hparams)
      assert hook.update({'epoch': n, **hparams}, hparams) is False
    return out

  rates = rates_by_epoch(hook, 1, recipe.hparams())
  for n, fraction in {1: 1.0, 2: 1.0, 3: 3 / 4, 4: 2 / 4, 5: 1 / 4}.items():
    assert rates[n]['learning_rate'] == pytest.approx(2e-4 * fraction)
    assert rates[n]['d_learning_rate'] == pytest.approx(4e-4 * fraction)
  # Resumed after epoch 3 with the stored rates and a fresh hook: the same schedule.
  (fresh,) = recipe.hooks()
  assert rates_by_epoch(fresh, 4, dict(rates[4])) == {4: rates[4], 5: rates[5]}


def test_ema_sampling_recomputes_batchnorm_statistics():
  """EMA weights sample with BatchNorm statistics of their own, not the raw generator's."""
  config = tiny_config(**{'ema.decay': 0.9, 'model.layer_mode': 'training'})
  trainer = trainer_for(config)
  recipe, state = trainer.recipe, trainer.initial_state()
  raw = state.generator
  # An EMA far from the raw weights: the pre-BatchNorm activations change scale.
  ema = jax.tree.map(lambda p: 3.0 * p, raw.params)
  variables = recipe.inference_variables(state.replace(ema_params=ema))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(variables['params']),
                                                  jax.tree.leaves(ema)))
  z = cdcgan.latents(5, np.arange(256), config.model.latent_dim)
  y = jnp.arange(256) % 4
  g = recipe.generator
  with_batch_stats, _ = g.apply(variables, z, y, train=True, mutable=['batch_stats'])
  standing = g.apply(variables, z, y, train=False)
  stale = g.apply({'params': ema, 'batch_stats': raw.batch_stats}, z, y, train=False)
  error = float(jnp.abs(standing - with_batch_stats).mean())
  assert error < 0.02 and float(jnp.abs(stale - with_batch_stats).mean()) > 5 * error
  # Without an EMA the raw generator's own variables are used unchanged.
  plain = recipe.inference_variables(state, use_ema=False)
  assert plain['batch_stats'] is raw.batch_stats and plain['params'] is raw.params
  # GANForge's BatchNorm never used batch statistics (layer_mode 'inference'): kept as trained.
  config.model.layer_mode = 'inference'
  kept = gan.GANRecipe(config).inference_variables(state.replace(ema_params=ema))
  assert kept['batch_stats'] is raw.batch_stats and kept['params'] is ema


@pytest.mark.parametrize('overrides', [
    {'model.d_conditioning': 'projection', 'model.g_conditioning': 'cbn', 'loss': 'hinge',
     'model.spectral_norm': 'd', 'model.d_norm': 'none', 'ema.decay': 0.99,
     'diffaug.policy': 'translation,cutout', 'diffaug.probability': 0.0,
     'diffaug.ada_target': 0.6, 'optimizer.d_learning_rate': 4e-4, 'transition_steps': 4},
    {'model.d_conditioning': 'auxiliary', 'model.layer_mode': 'training',
     'model.spectral_norm': 'gd', 'diffaug.policy': 'translation,brightness,contrast,flip'},
])
def test_variant_steps_learn_and_report(overrides):
  trainer = trainer_for(tiny_config(**overrides))
  state = trainer.initial_state()
  for i in range(3):
    state, metrics = trainer.step(state, _batch(trainer.recipe.config, 8, seed=i))
  values = {k: float(v) for k, v in metrics.items()}
  assert all(np.isfinite(list(values.values())))
  if 'ema.decay' in overrides:
    ema, params = state.ema_params, state.generator.params
    assert jax.tree.structure(ema) == jax.tree.structure(params)
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(params)))
    assert 0.0 <= values['augment_p'] <= 1.0 and 'real_sign' in values
  if 'auxiliary' in overrides.get('model.d_conditioning', ''):
    assert 0.0 <= values['d_class_acc'] <= 1.0


def test_twin_head_trains_in_the_step():
  """After one step the twin head has moved (D trains it on G's images; its terms are checked
  against their formulas above) and the step's losses stay finite."""
  config = tiny_config(**{'model.d_conditioning': 'projection+auxiliary+twin'})
  trainer = trainer_for(config)
  state = trainer.initial_state()
  before = jax.tree.map(np.asarray, state.discriminator.params['twin'])   # the step donates
  new, metrics = trainer.step(state, _batch(config, 8, seed=0))
  after = new.discriminator.params['twin']
  assert all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before),
                                                   jax.tree.leaves(after)))
  assert np.isfinite(float(metrics['g_loss'])) and 0.0 <= float(metrics['d_class_acc']) <= 1.0


def test_compact_discriminator_scores_pairs_like_separate_calls():
  from braingan.models import compact_gan  # pylint: disable=import-outside-toplevel
  d = compact_gan.Discriminator(image_size=32, widths=(8, 8, 16), mbstd_group=4)
  real = jnp.asarray(RNG.uniform(-1, 1, (8, 32, 32, 1)), jnp.float32)
  fake = jnp.asarray(RNG.uniform(-1, 1, (8, 32, 32, 1)), jnp.float32)
  y = jnp.arange(8) % 4
  variables = d.init(jax.random.key(0), real, y)
  both_logits, both_cls = d.apply(variables, gan._interleave(real, fake, 4),  # pylint: disable=protected-access
                                  gan._interleave(y, y, 4))  # pylint: disable=protected-access
  (r, f), (rc, fc) = (gan._split_pairs(both_logits, 4),  # pylint: disable=protected-access
                      gan._split_pairs(both_cls, 4))  # pylint: disable=protected-access
  alone_r, alone_rc = d.apply(variables, real, y)
  alone_f, _ = d.apply(variables, fake, y)
  np.testing.assert_allclose(r, alone_r, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(f, alone_f, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(rc, alone_rc, rtol=1e-5, atol=1e-5)
  # The minibatch-std channel really depends on the group: another group mate changes it.
  changed = real.at[1].set(0.0)
  assert not np.allclose(d.apply(variables, changed, y)[0][0], alone_r[0])


def test_recommended_preset_steps():
  from configs import cgan_conditioned  # pylint: disable=import-outside-toplevel
  config = cgan_conditioned.get_config()
  config.data.image_size = 32
  config.model.g_widths, config.model.d_widths = (16, 8, 8), (8, 16, 16)
  config.model.g_base_depth, config.model.latent_dim = 16, 16
  config.batch_size = 8
  trainer = trainer_for(config)
  state = trainer.initial_state()
  for i in range(3):
    state, metrics = trainer.step(state, _batch(config, 8, seed=i))
  values = {k: float(v) for k, v in metrics.items()}
  assert all(np.isfinite(list(values.values()))) and 'd_class_acc' in values
  assert values['augment_p'] >= 0.0
